// Creating communicators, one function per backend (communicator.h is the interface they share).
// native/addon/comm.cc picks one for dist.init; the MPI and NCCL ones exist only in builds that
// compiled them (MOEKIT_HAVE_MPI; NCCL with the CUDA backend).
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "communicator.h"

namespace moekit::comm {

// One rank, no peers: every collective is a copy (local_comm.cc). Nothing waits, so timeoutMs is
// only recorded (timeoutMs()).
std::unique_ptr<Communicator> createLocalCommunicator(int64_t timeoutMs);

// Every process of the MPI job (a duplicate of MPI_COMM_WORLD; a process started without mpirun
// is one rank). Initialises MPI on first use (MPI_Init_thread without argv; finalised at exit).
// Creating it is itself collective and waits at most timeoutMs for every rank (mpi_comm.cc).
std::unique_ptr<Communicator> createMpiCommunicator(int64_t timeoutMs);

// NCCL's ncclUniqueId: 128 opaque bytes that rank 0 creates and every rank passes to
// createNcclCommunicator (nccl_comm.cc).
using NcclId = std::array<uint8_t, 128>;

// Loads libnccl.so.2 (nccl_library.cc) and checks that a CUDA device is visible: throws
// Error(Comm) naming the library and where it was looked for, or Error(Device).
void requireNccl();
NcclId ncclUniqueId();
// NCCL over `size` ranks on CUDA device `device` (−1: rank mod the device count). ncclCommInitRank
// waits for every rank; the collectives then wait at most timeoutMs.
std::unique_ptr<Communicator> createNcclCommunicator(const NcclId& id, int rank, int size, int device, int64_t timeoutMs);

}  // namespace moekit::comm
