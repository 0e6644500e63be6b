/* finetune.h - tb-finetune: the model, loss and loop options from the command line, then the
 * training loop of tb/train/trainer.h. */
#ifndef TB_FINETUNE_H
#define TB_FINETUNE_H

#include "tb/base/cli.h"
#include "tb/train/trainer.h"

/* Builds the model (--init or --config, head from --task / --num-labels / the batches' label
 * order, MLM head and bias with --mlm), the fine-tuning loss and the loop's options from `cli`
 * (tb-finetune's option table), and runs the loop; `res` as tb_trainer_run. */
int ft_run(const tb_cli *cli, tb_trainer_result *res);

#endif
