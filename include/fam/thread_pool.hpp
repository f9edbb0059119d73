// A small fixed thread pool that provides a fam::parallel_hook, for examples, benchmarks and
// tests. The library itself never creates threads; engines usually plug in their own pool.
#ifndef FAM_THREAD_POOL_HPP_
#define FAM_THREAD_POOL_HPP_

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "parallel.hpp"

FAM_NAMESPACE_BEGIN

/// `threads - 1` workers plus the calling thread share each run; items are handed out by an
/// atomic counter. run() allocates nothing.
class thread_pool {
 public:
  explicit thread_pool(int threads) : workers_(threads > 1 ? threads - 1 : 0) {
    for (std::thread& t : workers_) t = std::thread([this] { work(); });
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int threads() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  /// The hook to put into a backend: backend.parallel = pool.hook().
  parallel_hook hook() noexcept { return {this, &thread_pool::run_hook}; }

 private:
  static void run_hook(void* self, index_t n, void (*task)(void*, index_t), void* arg) {
    static_cast<thread_pool*>(self)->run(n, task, arg);
  }

  // Runs from several threads are serialized; a task must not call run() itself.
  void run(index_t n, void (*task)(void*, index_t), void* arg) {
    std::lock_guard<std::mutex> one_run(run_mutex_);
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = task;
    arg_ = arg;
    n_ = n;
    next_.store(0);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
    lock.unlock();
    wake_.notify_all();
    drain();
    lock.lock();
    done_.wait(lock, [this] { return busy_ == 0; });
  }

  void drain() {
    for (index_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) task_(arg_, i);
  }

  void work() {
    unsigned seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      lock.unlock();
      drain();
      lock.lock();
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  void (*task_)(void*, index_t) = nullptr;
  void* arg_ = nullptr;
  index_t n_ = 0;
  std::atomic<index_t> next_{0};
  int busy_ = 0;
  unsigned generation_ = 0;
  bool stop_ = false;
};

FAM_NAMESPACE_END

#endif  // FAM_THREAD_POOL_HPP_
