/* tb/text/dataset.h - the whole data path of the text layer, for callers that use all of it:
 *   tb/text/task.h       the task table (GLUE tasks, formats, label sets);
 *   tb/text/examples.h   a dataset in memory (examples, skipped rows, word counts);
 *   tb/text/readers.h    GLUE TSV, text<TAB>label and corpus readers;
 *   tb/text/batches.h    encoding once, addressable batches;
 *   tb/text/batch_msg.h  the token batch message schema.
 */
#ifndef TB_DATASET_H
#define TB_DATASET_H

#include "tb/text/batch_msg.h"
#include "tb/text/batches.h"
#include "tb/text/examples.h"
#include "tb/text/readers.h"
#include "tb/text/task.h"

#endif
