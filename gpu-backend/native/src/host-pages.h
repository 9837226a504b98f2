// Host memory for a CPU KV cache: an anonymous mapping reserved at full size but backed only where
// written, so a cache allocated for every row at the model's full length costs resident memory in
// proportion to the tokens actually held, as the JS session's growing cache does. Fresh pages read
// as zeros, and Discard gives a freed row's pages back (they read as zeros again).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace native {

class HostPages {
 public:
  explicit HostPages(size_t bytes) : bytes_(bytes) {
    // NORESERVE: the kernel's overcommit check counts what is touched, not the whole reservation.
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) throw std::runtime_error("cannot reserve " + std::to_string(bytes) + " bytes of host memory for the KV cache");
    base_ = static_cast<uint8_t*>(base);
  }
  ~HostPages() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  HostPages(HostPages&& other) noexcept : base_(other.base_), bytes_(other.bytes_) { other.base_ = nullptr; }
  HostPages(const HostPages&) = delete;
  HostPages& operator=(const HostPages&) = delete;
  HostPages& operator=(HostPages&&) = delete;

  uint8_t* data() const { return base_; }
  size_t size() const { return bytes_; }

  // Bytes of the reservation backed by memory now (whole pages).
  size_t ResidentBytes() const {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> resident((bytes_ + page - 1) / page);
    if (mincore(base_, bytes_, resident.data()) != 0) throw std::runtime_error("mincore failed on the KV cache");
    size_t pages = 0;
    for (unsigned char flags : resident) pages += flags & 1;
    return pages * page;
  }

  // Returns the whole pages inside [offset, offset + length) to the kernel; the partial pages at either
  // end stay (they hold a neighbour's bytes).
  void Discard(size_t offset, size_t length) const {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t first = (offset + page - 1) / page * page;
    const size_t end = (offset + length) / page * page;
    if (end > first) madvise(base_ + first, end - first, MADV_DONTNEED);
  }

 private:
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace native
