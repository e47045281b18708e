// Shared by jaxdl's oneDNN custom calls: the CPU engine, per-thread scratch memory, a cache of primitives
// built once per geometry, and the translation of oneDNN's exceptions into FFI errors.
#ifndef JAXDL_ONEDNN_COMMON_H_
#define JAXDL_ONEDNN_COMMON_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace jaxdl_onednn {

namespace ffi = xla::ffi;

inline dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Per-thread scratch space, grown as needed and kept: one allocation per thread and slot for the whole run.
inline void* Scratch(size_t bytes, int slot) {
  constexpr int kSlots = 8;
  thread_local std::vector<std::unique_ptr<uint8_t[]>> buffers(kSlots);
  thread_local std::vector<size_t> sizes(kSlots, 0);
  if (sizes[slot] < bytes) {
    buffers[slot].reset(new (std::align_val_t(64)) uint8_t[bytes]);
    sizes[slot] = bytes;
  }
  return buffers[slot].get();
}

// Primitives (with whatever else they need) built once per key and shared by every thread.
template <typename Plan>
class PlanCache {
 public:
  template <typename Make>
  std::shared_ptr<Plan> Get(const std::string& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) return it->second;
    }
    auto plan = std::make_shared<Plan>(make());
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.emplace(key, plan).first->second;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Plan>> plans_;
};

inline dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// Every oneDNN call runs on this one thread. GNU OpenMP gives each thread that starts a parallel region its own
// team of threads, so oneDNN called from several of XLA's threads at once would run teams side by side (more
// threads than cores, each spinning while it waits); calls from one thread share one team of as many threads
// as cores. The calling XLA thread sleeps until its call is done.
class OneThread {
 public:
  static OneThread& Get() {
    static auto* worker = new OneThread();  // never destroyed: XLA may call in during interpreter shutdown
    return *worker;
  }

  void Run(const std::function<void()>& task) {
    std::packaged_task<void()> job(task);
    auto done = job.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
    }
    ready_.notify_one();
    done.get();  // rethrows what the task threw
  }

 private:
  OneThread() : thread_([this] { Loop(); }) { thread_.detach(); }

  void Loop() {
    for (;;) {
      std::packaged_task<void()> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !queue_.empty(); });
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::packaged_task<void()>> queue_;
  std::thread thread_;
};

inline ffi::Error Guard(const char* what, const std::function<void()>& body) {
  try {
    OneThread::Get().Run(body);
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("jaxdl onednn ") + what + ": " + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace jaxdl_onednn

#endif  // JAXDL_ONEDNN_COMMON_H_
