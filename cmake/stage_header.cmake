# cmake -DIN=<source header> -DOUT=<staged header> -P stage_header.cmake
# Copies a public header for installation, rewriting the project's includes
# ("client/x.h", "core/x.h", "gpu/x.h") to "clusterkv/<dir>/x.h" (see cmake/install.cmake).
file(READ "${IN}" _text)
string(REGEX REPLACE "#include \"(client|core|gpu)/" "#include \"clusterkv/\\1/" _text "${_text}")
file(WRITE "${OUT}" "${_text}")
