# `cmake --install`: the daemon and tools under bin/, libclusterkv.so with its headers, a CMake
# package (find_package(clusterkv) -> clusterkv::client) and pkg-config files. Included once
# from the top-level CMakeLists.txt, after every target exists.
#
# Components: server (clusterkvd), tools (clusterkv, clusterkv_bench, clusterkv_eval,
# clusterkv_demo, clusterkv_llama), client (the shared library), dev (headers, namelink, CMake
# package, pkg-config), python (client/python/CMakeLists.txt).
#
# Installed headers: the C ABI at <clusterkv/clusterkv.h>, the version at <clusterkv/version.h>,
# and the C++ API with the closure of headers it includes, at <clusterkv/client/client.h>,
# <clusterkv/core/...>, <clusterkv/gpu/...> and the generated <clusterkv/v1/kvcache*.pb.h>. The
# project's own includes ("client/x.h") are rewritten to "clusterkv/client/x.h" while staging,
# so a consumer needs only <prefix>/include and no generic "core/" directory lands on its path.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CLUSTERKV_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/clusterkv" CACHE STRING
    "Where the clusterkv CMake package files are installed (relative to the prefix)")

# ---- Binaries ----------------------------------------------------------------------------------
if(TARGET clusterkvd)
  install(TARGETS clusterkvd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT server)
endif()
foreach(_tool clusterkv clusterkv_bench clusterkv_eval clusterkv_demo clusterkv_llama)
  if(TARGET ${_tool})
    install(TARGETS ${_tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
  endif()
endforeach()

# ---- Headers: staged (includes rewritten) at build time, installed from the staging dir --------
# The closure of client/client.h inside the project (g++ -MM): Client, Sequence and the value
# types they take. None of them includes protobuf, gRPC or a compute-backend header (the
# transport, connection, data plane and centroid indexes stay behind client/internal/); the
# packaging test compiles each installed header alone against the prefix and refuses one that
# includes those, so a header added to the closure without being listed here fails that test.
set(_public_headers
  client/client.h client/clock.h client/retry.h client/sequence.h
  core/config.h core/kv_layout.h core/tensor_view.h)
set(_stage ${PROJECT_BINARY_DIR}/sdk/include/clusterkv)
set(_staged)
foreach(_h ${_public_headers})
  add_custom_command(
    OUTPUT ${_stage}/${_h}
    COMMAND ${CMAKE_COMMAND} -DIN=${PROJECT_SOURCE_DIR}/${_h} -DOUT=${_stage}/${_h}
            -P ${PROJECT_SOURCE_DIR}/cmake/stage_header.cmake
    DEPENDS ${PROJECT_SOURCE_DIR}/${_h} ${PROJECT_SOURCE_DIR}/cmake/stage_header.cmake
    COMMENT "Staging installed header clusterkv/${_h}"
    VERBATIM)
  list(APPEND _staged ${_stage}/${_h})
endforeach()
add_custom_target(clusterkv_sdk_headers DEPENDS ${_staged})
add_dependencies(clusterkv_client_shared clusterkv_sdk_headers)

foreach(_h ${_public_headers})
  get_filename_component(_dir ${_h} DIRECTORY)
  install(FILES ${_stage}/${_h} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/clusterkv/${_dir}
          COMPONENT dev)
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/client/clusterkv.h
              ${PROJECT_BINARY_DIR}/include/clusterkv/version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/clusterkv COMPONENT dev)

# ---- The shared library and its CMake package --------------------------------------------------
install(TARGETS clusterkv_client_shared EXPORT clusterkvTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT client NAMELINK_COMPONENT dev)
install(EXPORT clusterkvTargets NAMESPACE clusterkv:: FILE clusterkvTargets.cmake
        DESTINATION ${CLUSTERKV_INSTALL_CMAKEDIR} COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/clusterkvConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sdk/clusterkvConfig.cmake
  INSTALL_DESTINATION ${CLUSTERKV_INSTALL_CMAKEDIR})
# 0.x: every minor version may break the API (see CLUSTERKV_SOVERSION in client/).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_compat SameMinorVersion)
else()
  set(_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sdk/clusterkvConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${_compat})
install(FILES ${PROJECT_BINARY_DIR}/sdk/clusterkvConfig.cmake
              ${PROJECT_BINARY_DIR}/sdk/clusterkvConfigVersion.cmake
        DESTINATION ${CLUSTERKV_INSTALL_CMAKEDIR} COMPONENT dev)

# ---- pkg-config: clusterkv (the C ABI) and clusterkv-cpp (the C++ API and its dependencies) ----
# The prefix is written at install time, so `cmake --install --prefix P` gets P (not the
# configured CMAKE_INSTALL_PREFIX); DESTDIR is honoured by file(INSTALL).
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_kind}}")
    set(CLUSTERKV_PC_${_kind} "${CMAKE_INSTALL_${_kind}}")
  else()
    set(CLUSTERKV_PC_${_kind} "\${prefix}/${CMAKE_INSTALL_${_kind}}")
  endif()
endforeach()
set(CLUSTERKV_PC_PREFIX "@CLUSTERKV_PC_PREFIX@")  # kept for the install-time step
foreach(_pc clusterkv clusterkv-cpp)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${_pc}.pc.in ${PROJECT_BINARY_DIR}/sdk/${_pc}.pc.in
                 @ONLY)
  install(CODE "
    file(READ \"${PROJECT_BINARY_DIR}/sdk/${_pc}.pc.in\" _pc_text)
    string(REPLACE \"@CLUSTERKV_PC_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" _pc_text \"\${_pc_text}\")
    file(WRITE \"${PROJECT_BINARY_DIR}/sdk/pc/${_pc}.pc\" \"\${_pc_text}\")
    file(INSTALL \"${PROJECT_BINARY_DIR}/sdk/pc/${_pc}.pc\"
         DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")"
    COMPONENT dev)
endforeach()
