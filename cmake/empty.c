/* An empty translation unit, so that a library with no sources yet still builds. */
typedef int tb_empty_translation_unit;
