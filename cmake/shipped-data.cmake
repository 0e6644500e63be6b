# Data files the stages find beside their executables (stages/augment/shipped.h): copied to
# build/share/tinybert-c/ at configure time, installed to PREFIX/share/tinybert-c/ with the
# executables that read them (EXEDIR/../share/tinybert-c/ in both places).
include(GNUInstallDirs)
set(TB_SHIPPED_DATA augment/stopwords-en.txt glove/glove.6B.100d.first2604.txt)
foreach(f ${TB_SHIPPED_DATA})
  configure_file(${CMAKE_CURRENT_SOURCE_DIR}/data/${f} ${CMAKE_BINARY_DIR}/share/tinybert-c/${f} COPYONLY)
  get_filename_component(d ${f} DIRECTORY)
  install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/data/${f} DESTINATION ${CMAKE_INSTALL_DATADIR}/tinybert-c/${d})
endforeach()
install(TARGETS tb-augment RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
