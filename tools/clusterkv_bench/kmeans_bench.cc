// `clusterkv_bench kmeans`: gpu::SphericalKMeans on the CPU vs FAISS spherical K-means
// (faiss::Clustering over an IndexFlatIP) on the same synthetic clustered keys, with the same
// number of clusters, iterations and seed, for each thread count. Both clusterings are judged
// by the same objective, gpu::MeanCosineToNearest over the raw keys.
#include <omp.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/parallel.h"
#include "core/status_macros.h"
#include "core/tensor_view.h"
#include "faiss/Clustering.h"
#include "faiss/Index.h"
#include "faiss/IndexFlat.h"
#include "faiss/utils/distances.h"
#include "gpu/backend.h"
#include "gpu/kmeans.h"
#include "tools/clusterkv_bench/bench.h"
#include "tools/clusterkv_bench/bench_data.h"
#include "tools/clusterkv_bench/bench_report.h"

// OpenBLAS's own thread control (FAISS's BLAS calls run on OpenBLAS's pthread pool, which
// omp_set_num_threads does not govern).
extern "C" void openblas_set_num_threads(int num_threads);

namespace clusterkv::bench {
namespace {

std::string FaissName() {
  return absl::StrFormat("faiss_%d.%d.%d_spherical_kmeans", FAISS_VERSION_MAJOR,
                         FAISS_VERSION_MINOR, FAISS_VERSION_PATCH);
}

// The one conversion of FAISS's exceptions into a Status.
absl::Status FaissError(const std::exception& e) {
  return absl::InternalError(absl::StrCat("faiss: ", e.what()));
}

void SetFaissThreads(int threads) {
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

// One FAISS run: L2-normalise a copy of the keys (FAISS's recipe for cosine K-means; our
// K-means normalises internally, so both timings include it), then train with spherical
// centroids. max_points_per_centroid is raised so that FAISS clusters every row instead of a
// subsample; min_points_per_centroid is lowered so small inputs do not warn.
absl::Status RunFaissKMeans(const std::vector<float>& keys, int64_t rows,
                            const KMeansBenchConfig& cfg, uint64_t seed,
                            std::vector<float>* centroids) {
  try {
    std::vector<float> x(keys);
    faiss::fvec_renorm_L2(static_cast<size_t>(cfg.dim), static_cast<size_t>(rows), x.data());
    faiss::ClusteringParameters cp;
    cp.niter = cfg.iterations;
    cp.nredo = 1;
    cp.spherical = true;
    cp.verbose = false;
    cp.seed = static_cast<int>(seed);
    cp.max_points_per_centroid = static_cast<int>(std::min<int64_t>(rows, 1 << 30));
    cp.min_points_per_centroid = 1;
    faiss::Clustering clus(cfg.dim, cfg.clusters, cp);
    faiss::IndexFlatIP index(cfg.dim);
    clus.train(rows, x.data(), index);
    *centroids = std::move(clus.centroids);
  } catch (const std::exception& e) {
    return FaissError(e);
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const KMeansBenchConfig& cfg) {
  if (cfg.rows < 1 || cfg.dim < 1 || cfg.clusters < 1 || cfg.iterations < 1 || cfg.directions < 1 ||
      cfg.noise < 0) {
    return absl::InvalidArgumentError(
        "kmeans: rows, dim, clusters, iterations, directions must be >= 1 and noise >= 0");
  }
  if (cfg.clusters > cfg.rows) {
    return absl::InvalidArgumentError("kmeans: clusters must not exceed rows");
  }
  for (int t : cfg.thread_counts) {
    if (t < 1) return absl::InvalidArgumentError("kmeans: thread counts must be >= 1");
  }
  return absl::OkStatus();
}

std::vector<int> ThreadSweep(const BenchOptions& options) {
  std::vector<int> sweep = options.kmeans.thread_counts;
  if (sweep.empty()) {
    const int all = options.threads > 0 ? options.threads : DefaultThreads();
    sweep = {1, all};
  }
  std::sort(sweep.begin(), sweep.end());
  sweep.erase(std::unique(sweep.begin(), sweep.end()), sweep.end());
  return sweep;
}

}  // namespace

absl::Status RunKMeansBench(const BenchOptions& options) {
  const KMeansBenchConfig& cfg = options.kmeans;
  RETURN_IF_ERROR(ValidateConfig(cfg));
  const std::vector<float> keys =
      ClusteredKeys(cfg.rows, cfg.dim, cfg.directions, cfg.noise, options.seed);
  const ConstMatrixView key_view(keys.data(), cfg.rows, cfg.dim);
  gpu::KMeansOptions kopt;
  kopt.num_clusters = cfg.clusters;
  kopt.iterations = cfg.iterations;
  kopt.seed = options.seed;
  const std::string faiss_name = FaissName();

  Report report("kmeans");
  for (int threads : ThreadSweep(options)) {
    gpu::ExecContext ctx;
    ctx.backend = gpu::Backend::kCpu;
    ctx.threads = threads;
    gpu::Clustering ours;
    ASSIGN_OR_RETURN(TimingStats ours_time,
                     TimeRuns(options.warmup, options.repeats, [&]() -> absl::Status {
                       ASSIGN_OR_RETURN(ours, gpu::SphericalKMeans(key_view, kopt, ctx));
                       return absl::OkStatus();
                     }));

    SetFaissThreads(threads);
    std::vector<float> faiss_centroids;
    ASSIGN_OR_RETURN(TimingStats faiss_time, TimeRuns(options.warmup, options.repeats, [&]() {
                       return RunFaissKMeans(keys, cfg.rows, cfg, options.seed, &faiss_centroids);
                     }));

    const int eval_threads = std::max(threads, 1);
    ASSIGN_OR_RETURN(double ours_obj,
                     gpu::MeanCosineToNearest(key_view, ours.CentroidView(), eval_threads));
    ASSIGN_OR_RETURN(double faiss_obj,
                     gpu::MeanCosineToNearest(
                         key_view, ConstMatrixView(faiss_centroids.data(), cfg.clusters, cfg.dim),
                         eval_threads));
    const double diff_pct = faiss_obj != 0 ? (ours_obj - faiss_obj) / faiss_obj * 100.0 : 0.0;

    Json params = {{"rows", cfg.rows},
                   {"dim", cfg.dim},
                   {"clusters", cfg.clusters},
                   {"iterations", cfg.iterations},
                   {"threads", threads},
                   {"seed", options.seed},
                   {"directions", cfg.directions},
                   {"noise", cfg.noise}};
    ResultRow time_row =
        TimeRow("clusterkv_spherical_kmeans_cpu", params, "ms", ours_time, faiss_name, faiss_time);
    time_row.extra["objective"] = ours_obj;
    time_row.extra["baseline_objective"] = faiss_obj;
    time_row.extra["objective_ratio"] = faiss_obj != 0 ? ours_obj / faiss_obj : 0.0;
    time_row.extra["objective_diff_pct"] = diff_pct;
    time_row.extra["objective_meaning"] =
        "mean over keys of max cosine to a centroid (gpu::MeanCosineToNearest); higher is "
        "better; objective_diff_pct = (objective - baseline_objective) / baseline_objective "
        "* 100";
    time_row.extra["our_reported_objective"] = ours.objective;
    report.Add(std::move(time_row));

    ResultRow obj_row = HigherBetterRow("clusterkv_kmeans_objective", std::move(params), ours_obj,
                                        "mean_cos", faiss_name + "_objective", faiss_obj);
    obj_row.extra["objective_diff_pct"] = diff_pct;
    report.Add(std::move(obj_row));
  }
  return EmitReport(report, options.json_path);
}

}  // namespace clusterkv::bench
