# FindBLIS: locates a threaded BLIS (Debian: libblis-openmp-dev, then -pthread, then serial).
# Defines BLIS_FOUND and the imported target BLIS::BLIS.
set(_tb_blis_variants blis-openmp blis-pthread blis-serial)
find_path(BLIS_INCLUDE_DIR blis.h
  PATHS /usr/include /usr/local/include
  PATH_SUFFIXES ${CMAKE_LIBRARY_ARCHITECTURE}/blis-openmp ${CMAKE_LIBRARY_ARCHITECTURE}/blis-pthread
                ${CMAKE_LIBRARY_ARCHITECTURE}/blis-serial blis)
find_library(BLIS_LIBRARY NAMES blis
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}
  PATH_SUFFIXES blis-openmp blis-pthread blis-serial
  NO_DEFAULT_PATH)
if(NOT BLIS_LIBRARY)
  find_library(BLIS_LIBRARY NAMES blis)
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BLIS REQUIRED_VARS BLIS_LIBRARY BLIS_INCLUDE_DIR)
if(BLIS_FOUND AND NOT TARGET BLIS::BLIS)
  add_library(BLIS::BLIS UNKNOWN IMPORTED)
  set_target_properties(BLIS::BLIS PROPERTIES
    IMPORTED_LOCATION "${BLIS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BLIS_INCLUDE_DIR}")
endif()
mark_as_advanced(BLIS_INCLUDE_DIR BLIS_LIBRARY)
