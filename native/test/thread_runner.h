// The parallel runner the native test and bench programs hand to the kernels (instead of ORT's pool):
// plain std::threads pulling work items from an atomic counter.
#pragma once
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

struct ThreadRunner {
  int threads;
  static void run(void* impl, void (*fn)(void*, size_t), size_t total, void* arg) {
    const int n = static_cast<ThreadRunner*>(impl)->threads;
    std::atomic<size_t> next{0};
    auto body = [&] {
      for (size_t i; (i = next.fetch_add(1)) < total;) fn(arg, i);
    };
    std::vector<std::thread> ts;
    for (int k = 1; k < n; ++k) ts.emplace_back(body);
    body();
    for (auto& t : ts) t.join();
  }
};
