/* tb/base/log.h - leveled logging to stderr ("[tb-emit] 12:00:01.123 warn: ..."); never stdout. */
#ifndef TB_LOG_H
#define TB_LOG_H

typedef enum tb_log_level { TB_LOG_DEBUG = 0, TB_LOG_INFO, TB_LOG_WARN, TB_LOG_ERROR, TB_LOG_QUIET } tb_log_level;

void tb_log_set_name(const char *name);   /* the stage name shown in every line */
void tb_log_set_level(tb_log_level level);
tb_log_level tb_log_get_level(void);
/* Parses "debug|info|warn|error|quiet". */
int tb_log_parse_level(const char *s, tb_log_level *out);
void tb_log(tb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Called before each log line is written (NULL: none). A live progress bar (tb/base/progress.h) uses
 * it to clear its line, so log lines and the bar do not mix. */
void tb_log_set_before_write(void (*fn)(void *ctx), void *ctx);

#define TB_DEBUG(...) tb_log(TB_LOG_DEBUG, __VA_ARGS__)
#define TB_INFO(...) tb_log(TB_LOG_INFO, __VA_ARGS__)
#define TB_WARN(...) tb_log(TB_LOG_WARN, __VA_ARGS__)
#define TB_ERROR(...) tb_log(TB_LOG_ERROR, __VA_ARGS__)

#endif
