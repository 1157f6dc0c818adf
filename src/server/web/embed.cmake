# Writes the web page IN as a C++ raw string literal kWebPage into OUT.
file(READ ${IN} content)
file(WRITE ${OUT} "// Generated from src/server/web/index.html by embed.cmake. Do not edit.\n#pragma once\nnamespace jevons::server {\ninline constexpr const char* kWebPage = R\"JEVONSWEB(${content})JEVONSWEB\";\n}\n")
