/* classify.c - classifies (or scores) the lines of standard input with a tinybert-c checkpoint,
 * using only the installed library:
 *
 *     cc classify.c $(pkg-config --cflags --libs tinybert) -o classify
 *     printf 'a gripping film\nit is dull\n' | ./classify student/best
 *
 * A line with a tab is a text pair (text<TAB>text_b). Output, one line per input line:
 * "label_name<TAB>p_0<TAB>p_1..." for a classifier, "score" for a regression model. */
#include <tinybert.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int classify_line(tinybert *tb, char *line)
{
    char *b = strchr(line, '\t');
    if (b) *b++ = '\0';
    int n = tinybert_num_labels(tb);
    if (n == 1) {
        float score;
        if (tinybert_score(tb, line, b, &score) != 0) return 1;
        printf("%.6f\n", (double)score);
        return 0;
    }
    float *probs = malloc((size_t)n * sizeof *probs);
    int label;
    if (!probs || tinybert_classify(tb, line, b, &label, probs) != 0) {
        free(probs);
        return 1;
    }
    printf("%s", tinybert_label_name(tb, label));
    for (int k = 0; k < n; k++) printf("\t%.6f", (double)probs[k]);
    printf("\n");
    free(probs);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CHECKPOINT < lines\n", argv[0]);
        return 2;
    }
    tinybert_options o;
    tinybert_options_default(&o);
    o.threads = 1;
    tinybert *tb = tinybert_open(argv[1], &o);
    if (!tb) {
        fprintf(stderr, "classify: %s\n", tinybert_last_error());
        return 1;
    }
    char line[65536];
    long lineno = 0;
    int code = 0;
    while (fgets(line, sizeof line, stdin)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (classify_line(tb, line) != 0) {
            fprintf(stderr, "classify: line %ld: %s\n", lineno, tinybert_last_error());
            code = 1;
            break;
        }
    }
    tinybert_close(tb);
    return code;
}
