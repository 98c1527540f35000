#!/usr/bin/python3
"""Packaging test (CTest label integration): install the build tree into a temporary prefix and
use it from outside the project, as an engine would.

    packaging_test.py --build_dir=<build> --source_dir=<repo> [--cmake=cmake]
                      [--cxx=c++] [--cc=cc] [--python_module] [--keep]

1. `cmake --install` of the components server (clusterkvd), client (libclusterkv.so), dev
   (headers, CMake package, pkg-config files) and, with --python_module, python.
2. The installed tree: soname and symlinks; no RocksDB dependency; internal namespaces
   (clusterkv::storage, ::ucx) not exported; no installed header includes protobuf, gRPC,
   clusterkv/v1 or gpu headers; every installed header compiles alone against only
   <prefix>/include and Abseil's flags; the C header compiles as C99.
3. tests/integration/external_consumer configured with find_package(clusterkv) from the
   prefix, built, and run without a daemon and against the INSTALLED clusterkvd.
4. The C consumer built with `pkg-config --cflags --libs clusterkv` and the C++ one with
   `pkg-config --cflags --libs clusterkv-cpp`, both run against the daemon.
5. With --python_module: the installed Python package imports from the prefix (its RPATH finds
   the installed library) and the example runs against the daemon.
Every check prints a line; the script exits non-zero at the first failure.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from python_daemon import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd, env=None, cwd=None, timeout=600):
    print("+ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        sys.stdout.write(result.stdout + result.stderr)
        raise SystemExit("packaging_test: FAILED (exit %d): %s" % (result.returncode,
                                                                   " ".join(cmd)))
    return result.stdout


def check(condition, message):
    if not condition:
        raise SystemExit("packaging_test: FAILED: " + message)
    print("ok: " + message, flush=True)


def expect_ok_line(output, program):
    sys.stdout.write(output)
    check("%s: ok" % program in output, program + " reported ok")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build_dir", required=True)
    p.add_argument("--source_dir", required=True)
    p.add_argument("--cmake", default="cmake")
    p.add_argument("--cxx", default="c++")
    p.add_argument("--cc", default="cc")
    p.add_argument("--python_module", action="store_true",
                   help="also install and check the Python package")
    p.add_argument("--keep", action="store_true", help="keep the temporary prefix")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="ckvpkg_", dir="/tmp")
    prefix = os.path.join(work, "prefix")
    try:
        # ---- 1. install ------------------------------------------------------------------
        components = ["server", "client", "dev"] + (["python"] if args.python_module else [])
        for component in components:
            run([args.cmake, "--install", args.build_dir, "--prefix", prefix,
                 "--component", component])
        for component in components:
            manifest = os.path.join(args.build_dir, "install_manifest_%s.txt" % component)
            with open(manifest) as f:
                outside = [x for x in f.read().split() if not x.startswith(prefix + "/")]
            check(not outside, "component %s installed only under the prefix %s" %
                  (component, outside[:3]))
        libs = glob.glob(os.path.join(prefix, "lib*", "**", "libclusterkv.so*"), recursive=True)
        check(libs, "libclusterkv.so installed")
        libdir = os.path.dirname(libs[0])
        daemon_bin = os.path.join(prefix, "bin", "clusterkvd")
        check(os.access(daemon_bin, os.X_OK), "bin/clusterkvd installed")

        # ---- 2. the installed tree -------------------------------------------------------
        names = sorted(os.path.basename(x) for x in libs)
        check(len(names) == 3 and os.path.islink(os.path.join(libdir, "libclusterkv.so")),
              "libclusterkv.so -> soname -> real file: " + ", ".join(names))
        dynamic = run(["readelf", "-d", os.path.join(libdir, "libclusterkv.so")])
        check("SONAME" in dynamic and "librocksdb" not in dynamic,
              "soname set, no RocksDB dependency")
        exported = run(["nm", "-DC", "--defined-only", os.path.join(libdir, "libclusterkv.so")])
        # "<address> T <demangled name>": functions defined in the library.
        functions = [line.split(" ", 2)[2] for line in exported.splitlines()
                     if line.split(" ")[1:2] == ["T"]]
        hidden = [f for f in functions
                  if f.startswith(("clusterkv::storage::", "clusterkv::ucx::", "clusterkv::rpc::"))]
        check(functions and not hidden,
              "%d functions exported, none of clusterkv::storage, ::ucx, ::rpc %s" %
              (len(functions), hidden[:3]))
        check(any("clusterkv::client::Client::Connect" in f for f in functions) and
              " T ckv_version" in exported and " T ckv_client_open" in exported,
              "C++ API and C ABI exported")

        include = os.path.join(prefix, "include")
        headers = sorted(os.path.relpath(h, include) for h in
                         glob.glob(os.path.join(include, "clusterkv", "**", "*.h"),
                                   recursive=True))
        check("clusterkv/clusterkv.h" in headers and "clusterkv/client/client.h" in headers,
              "%d headers installed under include/clusterkv" % len(headers))
        # The C++ API is Client, Sequence and value types: no installed header may include
        # protobuf, gRPC, the generated clusterkv.v1 messages or the compute backend (gpu/),
        # which stay inside the library.
        internal = ("google/protobuf/", "grpc/", "grpcpp/", "grpc++/", "clusterkv/v1/",
                    "clusterkv/gpu/", "clusterkv/client/internal/", ".pb.h")
        offending = []
        for header in headers:
            with open(os.path.join(include, header)) as f:
                for line in f:
                    if line.lstrip().startswith("#include") and any(x in line for x in internal):
                        offending.append("%s: %s" % (header, line.strip()))
        check(not offending and not any(h.startswith(("clusterkv/v1/", "clusterkv/gpu/"))
                                        for h in headers),
              "no installed header includes protobuf, gRPC, clusterkv/v1 or gpu headers %s" %
              offending[:3])
        pc_dir = os.path.join(libdir, "pkgconfig")
        env = dict(os.environ, PKG_CONFIG_PATH=pc_dir)
        cpp_flags = run(["pkg-config", "--cflags", "clusterkv-cpp"], env=env).split()
        for header in headers:  # each alone: self-contained, and its includes are installed
            run([args.cxx, "-std=c++17", "-fsyntax-only", "-x", "c++"] + cpp_flags +
                [os.path.join(include, header)])
        check(True, "each installed header compiles alone with only -I<prefix>/include")
        run([args.cc, "-std=c99", "-Wall", "-Werror", "-fsyntax-only", "-I" + include, "-x", "c",
             os.path.join(include, "clusterkv", "clusterkv.h")])
        check(True, "clusterkv/clusterkv.h compiles as C99")

        # ---- 3. find_package consumer ----------------------------------------------------
        consumer_src = os.path.join(HERE, "external_consumer")
        consumer_build = os.path.join(work, "consumer-build")
        run([args.cmake, "-S", consumer_src, "-B", consumer_build,
             "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_CXX_COMPILER=" + args.cxx, "-DCMAKE_C_COMPILER=" + args.cc])
        run([args.cmake, "--build", consumer_build, "-j1"])
        consumer_cpp = os.path.join(consumer_build, "consumer_cpp")
        consumer_c = os.path.join(consumer_build, "consumer_c")
        expect_ok_line(run([consumer_cpp]), "consumer_cpp")
        expect_ok_line(run([consumer_c]), "consumer_c")

        # ---- 4. pkg-config builds --------------------------------------------------------
        c_flags = run(["pkg-config", "--cflags", "--libs", "clusterkv"], env=env).split()
        check(c_flags == ["-I" + include, "-L" + libdir, "-lclusterkv"],
              "pkg-config clusterkv: " + " ".join(c_flags))
        pc_c = os.path.join(work, "consumer_c_pkgconfig")
        run([args.cc, "-std=c99", "-O1", os.path.join(consumer_src, "consumer_c.c"), "-o", pc_c]
            + c_flags + ["-Wl,-rpath," + libdir, "-lm"])
        cpp_libs = run(["pkg-config", "--cflags", "--libs", "clusterkv-cpp"], env=env).split()
        pc_cpp = os.path.join(work, "consumer_cpp_pkgconfig")
        run([args.cxx, "-std=c++17", "-O1", os.path.join(consumer_src, "consumer.cc"), "-o",
             pc_cpp] + cpp_libs + ["-Wl,-rpath," + libdir])

        # ---- against the installed daemon ------------------------------------------------
        with Daemon(daemon_bin) as daemon:
            for program in (consumer_cpp, consumer_c, pc_c, pc_cpp):
                name = "consumer_cpp" if "cpp" in os.path.basename(program) else "consumer_c"
                expect_ok_line(run([program, daemon.target]), name)
            check(True, "find_package and pkg-config consumers round-trip through the "
                        "installed clusterkvd")

            # ---- 5. the installed Python package -----------------------------------------
            if args.python_module:
                packages = glob.glob(os.path.join(prefix, "**", "clusterkv", "__init__.py"),
                                     recursive=True)
                check(len(packages) == 1, "Python package installed: " + str(packages))
                py_env = dict(os.environ,
                              PYTHONPATH=os.path.dirname(os.path.dirname(packages[0])))
                version = run([sys.executable, "-c",
                               "import clusterkv; print(clusterkv.__file__, "
                               "clusterkv.__version__)"], env=py_env)
                check(version.startswith(prefix), "installed module imports: " + version.strip())
                example = os.path.join(args.source_dir, "client", "python", "examples",
                                       "select_and_fetch.py")
                out = run([sys.executable, example, "--target=" + daemon.target,
                           "--tokens=1024", "--steps=2"], env=py_env)
                sys.stdout.write(out)
                check("cache hit rate" in out, "example runs on the installed package")
        print("packaging_test: all checks passed")
        return 0
    finally:
        if args.keep:
            print("packaging_test: kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
