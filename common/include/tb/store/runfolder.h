/* tb/store/runfolder.h - an output folder belongs to one run.
 *
 * The lock. A stage that writes a folder holds flock(2) LOCK_EX on DIR/.lock for as long as it
 * writes there. The kernel drops the lock when the owner's last descriptor closes, so a process
 * that dies (SIGKILL, a restarted container) never leaves a stale lock: the next run simply takes
 * it. The lock file is never removed (removing it would let two processes lock two different
 * files of the same name). Beside it, DIR/.lock.info says who holds it ("pid P host H started T
 * stage S"), for information only: it is rewritten by each new owner and read only to name the
 * holder in the error a second writer gets. The descriptor is close-on-exec, so a child process
 * (gnuplot) never inherits the lock. flock(2) is reliable on local file systems; NFS emulates
 * it with POSIX locks.
 *
 * What a run writes. The run entries of a training folder are `latest`, `step-N/`, `best/`,
 * `metrics.jsonl`, `vocab.txt` and `loss.png` (tb/train/trainer.h). A folder holding `latest`, a
 * `step-N/` or `best/` holds checkpoints of a run; one with only the other entries holds the
 * output of a run that ended before its first checkpoint. Other files are never looked at or
 * touched.
 *
 * Replacing a run (--overwrite). The new run writes its whole folder into DIR/overwrite.new/
 * while the old one stays untouched; at its end tb_runfolder_replace moves it into place:
 *   1. DIR/latest is pointed at overwrite.new/step-F (F: the new run's latest), atomically;
 *   2. the old run entries move into DIR/overwrite.old/ (then overwrite.new/.old-moved is written);
 *   3. the new entries but step-F move from overwrite.new/ into DIR;
 *   4. step-F is linked (hard links) into DIR/step-F, and DIR/latest is pointed at it;
 *   5. overwrite.old/ and overwrite.new/ are removed.
 * At every moment DIR/latest names a complete checkpoint, and every step is safe to repeat: a
 * replacement cut short (a crash) is completed by calling tb_runfolder_replace again, which the
 * trainer does when it finds DIR/latest pointing into overwrite.new/.
 */
#ifndef TB_RUNFOLDER_H
#define TB_RUNFOLDER_H

#include <stddef.h>

#define TB_RUNFOLDER_LOCK ".lock"
#define TB_RUNFOLDER_LOCK_INFO ".lock.info"
#define TB_RUNFOLDER_NEW "overwrite.new"
#define TB_RUNFOLDER_OLD "overwrite.old"

typedef struct tb_runfolder_lock {
    int fd;          /* the locked DIR/.lock (-1: not held) */
} tb_runfolder_lock;

/* Creates `dir` (one level) when missing and takes its lock for `stage` ("tb-finetune"). A
 * folder locked by another process (or by another descriptor of this one) is TB_EINVAL with a
 * message naming the folder and the holder's pid, host and start time. Release with
 * tb_runfolder_unlock. */
int tb_runfolder_lock_take(tb_runfolder_lock *l, const char *dir, const char *stage);

/* Releases the lock (the files stay). Safe on a lock never taken or already released, when
 * the struct was zeroed with l->fd = -1 or filled by tb_runfolder_lock_take. */
void tb_runfolder_unlock(tb_runfolder_lock *l);

/* What `dir` holds of a run (see above): TB_RUNFOLDER_CHECKPOINTS, TB_RUNFOLDER_OUTPUT (run
 * entries but no checkpoint) or TB_RUNFOLDER_NONE (also when `dir` is missing); `what` gets the
 * run entries found ("latest, step-4, metrics.jsonl"), "" when none. -1 (error set) when `dir`
 * cannot be listed. */
enum { TB_RUNFOLDER_NONE = 0, TB_RUNFOLDER_OUTPUT = 1, TB_RUNFOLDER_CHECKPOINTS = 2 };
int tb_runfolder_used(const char *dir, char *what, size_t n);

/* 1 when DIR/latest exists and points into DIR/overwrite.new (a replacement was cut short). */
int tb_runfolder_replace_pending(const char *dir);

/* Moves the finished run in DIR/overwrite.new into DIR in place of the old run, as above. */
int tb_runfolder_replace(const char *dir);

/* Removes `path` and everything below it (nothing when it does not exist). */
int tb_runfolder_remove_tree(const char *path);

#endif
