/* mpi.h — data-parallel training across processes for nflow train (tools/mpi.c).
 * Built on MPI when CMake found it (NFLOW_MPI defined); the library knows no MPI, only the nf_reducer
 * it is lent (nflow.h, nf_trainer_set_reducer). Without MPI, or when the program was not started by an
 * MPI launcher (mpirun), there is one process: rank 0 of 1, and every function here is a no-op. */
#ifndef NFLOW_MPI_H
#define NFLOW_MPI_H

#include "nflow.h"

#include <stdint.h>

/* Join the MPI job if the environment says an MPI launcher started this process (Open MPI's
 * OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK); otherwise nothing. Leaving the job is registered with
 * atexit. Dies (one line) if MPI cannot start. */
void dist_init(int *argc, char ***argv);
/* This process's rank, the number of processes, and how many of them run on this machine. */
int dist_rank(void);
int dist_size(void);
int dist_local_size(void);
/* --mpi-bucket-mb: the gradient is all-reduced in buckets of mb MiB (MPI_Iallreduce, posted during the
 * backward pass as the flow reports them final: nf_reducer.grad_ready), 0 = one MPI_Allreduce after
 * the backward pass (the default). Call before dist_reducer. Dies (one line) where it cannot apply: a
 * build without MPI, a process not started by mpirun, 0 < mb < 0.0001 (26 values a bucket). */
void dist_set_bucket_mb(double mb);
/* The reducer for the trainer (element-wise sums with MPI_Allreduce, timed), or NULL for one process. */
const nf_reducer *dist_reducer(void);
/* 1 on every process if flag is nonzero on any of them (a decision all must take together). */
int dist_any(int flag);
/* 1 on every process if h is the same on all of them. */
int dist_same(uint64_t h);
/* Seconds spent in the sums of dist_reducer() so far. */
double dist_comm_seconds(void);
/* With NFLOW_MPI_TIMING set (measurements): seconds spent waiting at a barrier for the slowest process
 * before each gradient sum, and in the gradient sums themselves; else zeros. With buckets the barrier
 * comes before the first bucket is posted, and the gradient sum's time is what the backward pass did not
 * hide: the time spent posting and testing the buckets plus the final wait. */
void dist_timing(double *wait, double *grad);
/* The gradient's all-reduce bucket in effect, in MiB (after dist_reducer); 0: one call after the backward pass. */
double dist_bucket_mb(void);
/* After an error line: end the whole job (MPI_Abort) when there are several processes; else nothing. */
void dist_abort(int code);
/* For the tests: 1 if NFLOW_MPI_FAULT="KIND:RANK:STEP" names this kind, this process and this step
 * (kinds the training loop knows: "fail" — this process stops with an error, "diverge" — this
 * process's parameters are nudged, which --check-sync must catch; "kill" and "killbest" — this
 * process kills itself with SIGKILL after the step's validation score, before its checkpoint, or
 * between its checkpoint and a new best's .best file). */
int dist_fault(const char *kind, int64_t step);

#endif
