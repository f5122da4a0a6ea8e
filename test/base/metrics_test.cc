#include "base/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace rfs::base {
namespace {

TEST(MetricsTest, CountersGaugesRender) {
  MetricsRegistry r;
  Counter* c = r.GetCounter("rfs_reads_total", "Reads.", {{"source", "on_demand"}});
  EXPECT_EQ(c, r.GetCounter("rfs_reads_total", "Reads.", {{"source", "on_demand"}}));
  Counter* p = r.GetCounter("rfs_reads_total", "Reads.", {{"source", "prefetch"}});
  EXPECT_NE(c, p);
  c->Increment(3);
  p->Increment();
  Gauge* g = r.GetGauge("rfs_cached_bytes", "Bytes \"cached\".");
  g->Set(10);
  g->Add(-4);
  std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("# HELP rfs_reads_total Reads.\n# TYPE rfs_reads_total counter\n"),
            std::string::npos);
  EXPECT_NE(text.find("rfs_reads_total{source=\"on_demand\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("rfs_reads_total{source=\"prefetch\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("rfs_cached_bytes 6\n"), std::string::npos);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  MetricsRegistry r;
  Histogram* h = r.GetHistogram("rfs_latency_seconds", "Latency.", {0.1, 1, 10},
                                {{"op", "read"}});
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0}) h->Observe(v);
  std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("rfs_latency_seconds_bucket{op=\"read\",le=\"0.1\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("rfs_latency_seconds_bucket{op=\"read\",le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("rfs_latency_seconds_bucket{op=\"read\",le=\"10\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("rfs_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 5\n"),
            std::string::npos);
  EXPECT_NE(text.find("rfs_latency_seconds_sum{op=\"read\"} 56.05\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("rfs_latency_seconds_count{op=\"read\"} 5\n"), std::string::npos);
}

TEST(MetricsTest, LabelValuesEscaped) {
  MetricsRegistry r;
  r.GetCounter("x_total", "X.", {{"path", "a\"b\\c\nd"}})->Increment();
  EXPECT_NE(r.RenderPrometheus().find("x_total{path=\"a\\\"b\\\\c\\nd\"} 1"), std::string::npos);
}

TEST(MetricsTest, ConcurrentIncrements) {
  MetricsRegistry r;
  Counter* c = r.GetCounter("n_total", "N.");
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) {
    ts.emplace_back([&] {
      for (int j = 0; j < 10000; ++j) c->Increment();
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c->value(), 40000u);
}

}  // namespace
}  // namespace rfs::base
