// Resumable sessions and shared documents against a real clusterkvd (gRPC data path):
//   - two sequences forked from one stored document decode bit-identically to a sequence that
//     prefilled the whole prompt itself, and read back the document's keys and values;
//   - shared prefixes survive a fork's drop and a daemon restart; a document in use cannot be
//     dropped; once everything is dropped the tiers hold what they held before (nothing lost,
//     nothing leaked);
//   - another tenant neither finds nor forks a tenant's document, unless the owner granted it
//     (durably; a revoke stops new forks, not the existing one);
//   - a checkpointed sequence resumed by a new client continues bit-identically to the
//     uninterrupted decode, across window offloads, and a fork resumes too;
//   - a worker process SIGKILLed in the middle of a decode step is resumed by another process
//     (this one) with the uninterrupted decode's outputs.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/sequence.h"
#include "core/half.h"
#include "gtest/gtest.h"
#include "tests/integration/small_client_options.h"
#include "tests/testing/daemon_process.h"

namespace clusterkv {
namespace {

using ::clusterkv::testing::DaemonProcess;
using ::clusterkv::testing::KvCacheClient;
using ::clusterkv::testing::MakeKvCacheClient;

constexpr int32_t kDim = 16;
constexpr int32_t kSegment = 64;
const KvLayout kLayout{3, 4, 2, kDim, DType::kFloat16};

client::ClientOptions Options(const std::string& target, const std::string& tenant) {
  client::ClientOptions o = testing::SmallClientOptions(target, tenant, "grpc");
  o.config.token_budget = 48;
  o.config.recluster_interval = 8;
  o.config.prefill_segment_tokens = kSegment;
  o.config.prefill_segment_clusters = 4;
  return o;
}

std::unique_ptr<client::Client> Connect(const std::string& target, const std::string& tenant) {
  auto c = client::Client::Connect(Options(target, tenant));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// Seeded gaussian values.
std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// The prompt's keys and values of one layer, token-major [tokens, kv_heads, dim].
struct Prompt {
  int64_t tokens = 0;
  std::vector<std::vector<float>> keys, values;  // per layer
  std::vector<int32_t> ids;

  explicit Prompt(int64_t n) : tokens(n) {
    for (int32_t l = 0; l < kLayout.num_layers; ++l) {
      keys.push_back(Random(n * kLayout.num_kv_heads * kDim, 100 + l));
      values.push_back(Random(n * kLayout.num_kv_heads * kDim, 200 + l));
    }
    for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(1000 + i * 7));
  }
  // Token-major view of rows [begin, end) of `layer`.
  Tensor3View View(const std::vector<float>& t, int64_t begin, int64_t end) const {
    const int64_t row = int64_t{kLayout.num_kv_heads} * kDim;
    Tensor3View view;
    view.data = t.data() + begin * row;
    view.dtype = DType::kFloat32;
    view.dims = {kLayout.num_kv_heads, end - begin, kDim};
    view.strides = {kDim, row};
    return view;
  }
};

absl::Status Prefill(client::Sequence& seq, const Prompt& p, int64_t begin, int64_t end) {
  for (int32_t l = 0; l < kLayout.num_layers; ++l) {
    absl::Status s = seq.OffloadPrefill(l, p.View(p.keys[l], begin, end),
                                        p.View(p.values[l], begin, end));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Decodes `steps` steps from step `first` (inputs seeded by the step number), returning every
// attention output; checkpoints after each step when asked.
absl::StatusOr<std::vector<float>> Decode(client::Sequence& seq, int first, int steps,
                                          bool checkpoint = false) {
  std::vector<float> outputs;
  const int32_t q_size = kLayout.num_q_heads * kDim;
  const int32_t kv_size = kLayout.num_kv_heads * kDim;
  for (int step = first; step < first + steps; ++step) {
    for (int32_t l = 0; l < kLayout.num_layers; ++l) {
      const std::vector<float> q = Random(q_size, 5000 + step * 10 + l);
      const std::vector<float> k = Random(kv_size, 7000 + step * 10 + l);
      const std::vector<float> v = Random(kv_size, 9000 + step * 10 + l);
      std::vector<float> out(q_size);
      absl::Status s = seq.Attend(l, ConstMatrixView(q.data(), kLayout.num_q_heads, kDim),
                                  MatrixView(out.data(), kLayout.num_q_heads, kDim));
      if (!s.ok()) return s;
      outputs.insert(outputs.end(), out.begin(), out.end());
      s = seq.AppendToken(l, ConstMatrixView(k.data(), kLayout.num_kv_heads, kDim),
                          ConstMatrixView(v.data(), kLayout.num_kv_heads, kDim));
      if (!s.ok()) return s;
    }
    if (checkpoint) {
      absl::Status s = seq.Checkpoint();
      if (!s.ok()) return s;
    }
  }
  return outputs;
}

v1::StatsResponse Stats(const KvCacheClient& c) {
  v1::StatsResponse response;
  const grpc::Status s = c.stub->Stats(c.Context().get(), v1::StatsRequest(), &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response;
}

uint64_t TierBytes(const KvCacheClient& c) {
  const v1::StatsResponse s = Stats(c);
  return s.host().bytes() + s.ssd().bytes();
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.Start().ok()) << daemon_.output(); }
  DaemonProcess daemon_;
};

// First in the file: the worker is forked before this process creates any gRPC object (ctest
// runs every test in a process of its own).
TEST_F(SessionTest, WorkerKilledMidDecodeIsResumedByAnotherProcess) {
  const Prompt prompt(150);
  constexpr int kCheckpointed = 9;
  const pid_t worker = fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    // The worker: prefill, 9 checkpointed steps, then half of step 10, and death.
    auto engine = client::Client::Connect(Options(daemon_.target(), "tenant-a"));
    if (!engine.ok()) _exit(1);
    auto seq = (*engine)->OpenSequence("worker", kLayout);
    if (!seq.ok() || !Prefill(**seq, prompt, 0, prompt.tokens).ok()) _exit(2);
    if (!Decode(**seq, 0, kCheckpointed, /*checkpoint=*/true).ok()) _exit(3);
    const std::vector<float> q = Random(kLayout.num_q_heads * kDim, 1);
    const std::vector<float> kv = Random(kLayout.num_kv_heads * kDim, 2);
    std::vector<float> out(q.size());
    for (int32_t l = 0; l < 2; ++l) {
      if (!(*seq)->Attend(l, ConstMatrixView(q.data(), kLayout.num_q_heads, kDim),
                          MatrixView(out.data(), kLayout.num_q_heads, kDim)).ok() ||
          !(*seq)->AppendToken(l, ConstMatrixView(kv.data(), kLayout.num_kv_heads, kDim),
                               ConstMatrixView(kv.data(), kLayout.num_kv_heads, kDim)).ok()) {
        _exit(4);
      }
    }
    raise(SIGKILL);
    _exit(5);
  }
  int status = 0;
  ASSERT_EQ(waitpid(worker, &status, 0), worker);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the worker exited with " << WEXITSTATUS(status);
  ASSERT_EQ(WTERMSIG(status), SIGKILL);

  auto engine = Connect(daemon_.target(), "tenant-a");
  auto reference = engine->OpenSequence("reference", kLayout);
  ASSERT_TRUE(reference.ok());
  ASSERT_TRUE(Prefill(**reference, prompt, 0, prompt.tokens).ok());
  absl::StatusOr<std::vector<float>> want = Decode(**reference, 0, 20);
  ASSERT_TRUE(want.ok()) << want.status();
  auto resumed = engine->ResumeSequence("worker");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ((*resumed)->num_tokens(), prompt.tokens + kCheckpointed);
  absl::StatusOr<std::vector<float>> got = Decode(**resumed, kCheckpointed, 20 - kCheckpointed);
  ASSERT_TRUE(got.ok()) << got.status();
  const size_t per_step = static_cast<size_t>(kLayout.num_layers) * kLayout.num_q_heads * kDim;
  ASSERT_EQ(got->size(), (20 - kCheckpointed) * per_step);
  EXPECT_EQ(std::memcmp(got->data(), want->data() + kCheckpointed * per_step,
                        got->size() * sizeof(float)),
            0);
}

TEST_F(SessionTest, ForksOfOneDocumentDecodeAsTheUnsharedRun) {
  constexpr int64_t kDocTokens = 3 * kSegment, kPromptTokens = 3 * kSegment + 50;
  const Prompt prompt(kPromptTokens);
  auto engine = Connect(daemon_.target(), "tenant-a");
  ASSERT_NE(engine, nullptr);

  auto doc = engine->OpenSequence("doc", kLayout);
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_TRUE(Prefill(**doc, prompt, 0, kDocTokens).ok());
  // The engine's own state (e.g. sliding windows) rides along, in several pieces.
  std::string windows(size_t{5} << 20, 'w');
  windows[12345] = 'x';
  ASSERT_TRUE((*doc)
                  ->Publish(absl::MakeConstSpan(prompt.ids).subspan(0, kDocTokens), "m", windows)
                  .ok());

  auto found = engine->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->document, "doc");
  EXPECT_EQ((*found)->segments, 3);
  EXPECT_EQ((*found)->tokens, kDocTokens);
  // Another model, or a prompt that differs in its first segment, finds nothing.
  auto other_model = engine->FindPrefix(prompt.ids, "other", kLayout);
  ASSERT_TRUE(other_model.ok());
  EXPECT_FALSE(other_model->has_value());
  std::vector<int32_t> changed = prompt.ids;
  changed[kSegment + 3] += 1;  // the second segment differs: only the first is shared
  auto partial = engine->FindPrefix(changed, "m", kLayout);
  ASSERT_TRUE(partial.ok());
  ASSERT_TRUE(partial->has_value());
  EXPECT_EQ((*partial)->segments, 1);
  EXPECT_EQ((*partial)->tokens, kSegment);
  auto partial_fork = engine->OpenSequenceFrom("partial", **partial);
  ASSERT_TRUE(partial_fork.ok()) << partial_fork.status();
  EXPECT_EQ((*partial_fork)->num_tokens(), kSegment);
  EXPECT_TRUE((*partial_fork)->engine_state().empty());  // the windows belong to the end

  auto unshared = engine->OpenSequence("unshared", kLayout);
  ASSERT_TRUE(unshared.ok());
  ASSERT_TRUE(Prefill(**unshared, prompt, 0, kPromptTokens).ok());
  absl::StatusOr<std::vector<float>> want = Decode(**unshared, 0, 20);
  ASSERT_TRUE(want.ok()) << want.status();

  for (const char* id : {"fork-1", "fork-2"}) {
    SCOPED_TRACE(id);
    auto fork = engine->OpenSequenceFrom(id, **found);
    ASSERT_TRUE(fork.ok()) << fork.status();
    EXPECT_EQ((*fork)->base_document(), "doc");
    EXPECT_EQ((*fork)->num_tokens(), kDocTokens);
    EXPECT_TRUE((*fork)->engine_state() == windows);  // it shares the whole document
    // The shared prefix reads back as prefilled (rounded to the stored fp16).
    const int64_t row = int64_t{kLayout.num_kv_heads} * kDim;
    std::vector<float> k(kDocTokens * row), v(kDocTokens * row);
    ASSERT_TRUE((*fork)->ReadTokens(2, 0, kDocTokens, k.data(), v.data()).ok());
    for (int64_t i = 0; i < kDocTokens * row; ++i) {
      ASSERT_EQ(k[i], HalfToFloat(FloatToHalf(prompt.keys[2][i]))) << i;
      ASSERT_EQ(v[i], HalfToFloat(FloatToHalf(prompt.values[2][i]))) << i;
    }
    ASSERT_TRUE(Prefill(**fork, prompt, kDocTokens, kPromptTokens).ok());
    absl::StatusOr<std::vector<float>> got = Decode(**fork, 0, 20);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), want->size());
    EXPECT_EQ(std::memcmp(got->data(), want->data(), got->size() * sizeof(float)), 0);
  }
  // The document is read-only.
  EXPECT_EQ(Prefill(**doc, prompt, kDocTokens, kPromptTokens).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SessionTest, SharedPrefixesSurviveDropsAndRestartsAndLeakNothing) {
  constexpr int64_t kDocTokens = 2 * kSegment;
  const Prompt prompt(kDocTokens + 30);
  const KvCacheClient admin = MakeKvCacheClient(daemon_.target(), "tenant-a");
  const uint64_t empty = TierBytes(admin);
  std::optional<client::Client::StoredPrefix> prefix;
  uint64_t with_doc = 0;
  std::vector<float> want;
  {
    auto engine = Connect(daemon_.target(), "tenant-a");
    auto doc = engine->OpenSequence("doc", kLayout);
    ASSERT_TRUE(doc.ok());
    ASSERT_TRUE(Prefill(**doc, prompt, 0, kDocTokens).ok());
    ASSERT_TRUE((*doc)->Publish(absl::MakeConstSpan(prompt.ids).subspan(0, kDocTokens), "m").ok());
    with_doc = TierBytes(admin);
    auto found = engine->FindPrefix(prompt.ids, "m", kLayout);
    ASSERT_TRUE(found.ok() && found->has_value());
    prefix = **found;
    auto a = engine->OpenSequenceFrom("fork-a", *prefix);
    auto b = engine->OpenSequenceFrom("fork-b", *prefix);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(Prefill(**a, prompt, kDocTokens, prompt.tokens).ok());
    ASSERT_TRUE(Prefill(**b, prompt, kDocTokens, prompt.tokens).ok());
    // Forks cost only their own tokens: far less than a second document.
    const uint64_t with_forks = TierBytes(admin);
    EXPECT_LT(with_forks - with_doc, with_doc - empty);
    EXPECT_EQ((*doc)->Close(/*drop=*/true).code(), absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE((*a)->Close(/*drop=*/true).ok());
    absl::StatusOr<std::vector<float>> b_out = Decode(**b, 0, 4);
    ASSERT_TRUE(b_out.ok()) << b_out.status();
    ASSERT_TRUE((*b)->Checkpoint().ok());
  }
  ASSERT_TRUE(daemon_.Stop().ok()) << daemon_.output();
  ASSERT_TRUE(daemon_.Restart().ok()) << daemon_.output();
  {
    auto engine = Connect(daemon_.target(), "tenant-a");
    // After the restart the directory, the fork and its shared blocks are all back.
    auto found = engine->FindPrefix(prompt.ids, "m", kLayout);
    ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
    auto b = engine->ResumeSequence("fork-b");
    ASSERT_TRUE(b.ok()) << b.status();
    absl::StatusOr<std::vector<float>> more = Decode(**b, 4, 4);
    ASSERT_TRUE(more.ok()) << more.status();
    auto doc = engine->ReopenSequence("doc");
    ASSERT_TRUE(doc.ok());
    EXPECT_EQ((*doc)->Close(/*drop=*/true).code(), absl::StatusCode::kFailedPrecondition);
    ASSERT_TRUE((*b)->Close(/*drop=*/true).ok());
    // The clean stop wrote every block to the SSD (reads since then copied some back to the
    // host tier, which does not move them): the SSD holds exactly the document again.
    EXPECT_EQ(Stats(admin).ssd().bytes(), with_doc);
    ASSERT_TRUE((*doc)->Close(/*drop=*/true).ok());
    EXPECT_EQ(TierBytes(admin), empty);
    auto gone = engine->FindPrefix(prompt.ids, "m", kLayout);
    ASSERT_TRUE(gone.ok());
    EXPECT_FALSE(gone->has_value());
  }
}

TEST_F(SessionTest, AnotherTenantNeitherFindsNorForksADocument) {
  const Prompt prompt(2 * kSegment);
  auto a = Connect(daemon_.target(), "tenant-a");
  auto doc = a->OpenSequence("doc", kLayout);
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(Prefill(**doc, prompt, 0, prompt.tokens).ok());
  ASSERT_TRUE((*doc)->Publish(prompt.ids, "m").ok());
  auto own = a->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(own.ok() && own->has_value());

  auto b = Connect(daemon_.target(), "tenant-b");
  auto theirs = b->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(theirs.ok()) << theirs.status();
  EXPECT_FALSE(theirs->has_value());
  auto fork = b->OpenSequenceFrom("stolen", **own);
  EXPECT_EQ(fork.status().code(), absl::StatusCode::kNotFound) << fork.status();
  // Tenant b's own sequence of the same name is its own business.
  auto resumed = b->ResumeSequence("doc");
  EXPECT_EQ(resumed.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SessionTest, AGrantSharesADocumentWithOneOtherTenantOnly) {
  constexpr int64_t kDocTokens = 2 * kSegment;
  const Prompt prompt(kDocTokens + 40);
  auto a = Connect(daemon_.target(), "tenant-a");
  auto doc = a->OpenSequence("doc", kLayout);
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(Prefill(**doc, prompt, 0, kDocTokens).ok());
  ASSERT_TRUE((*doc)->Publish(absl::MakeConstSpan(prompt.ids).subspan(0, kDocTokens), "m").ok());
  const client::Client::StoredPrefix named{"doc", 2, kDocTokens, kLayout, "tenant-a"};

  auto b = Connect(daemon_.target(), "tenant-b");
  auto before = b->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(before->has_value());
  EXPECT_EQ(b->OpenSequenceFrom("early", named).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*doc)->Grant("tenant-a").code(), absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE((*doc)->Grant("tenant-b").ok());
  ASSERT_TRUE(daemon_.Stop().ok());  // grants are durable
  ASSERT_TRUE(daemon_.Restart().ok()) << daemon_.output();
  a = Connect(daemon_.target(), "tenant-a");
  b = Connect(daemon_.target(), "tenant-b");
  auto found = b->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(found.ok() && found->has_value()) << found.status();
  EXPECT_EQ((*found)->owner, "tenant-a");
  EXPECT_EQ((*found)->tokens, kDocTokens);
  auto fork = b->OpenSequenceFrom("fork", **found);
  ASSERT_TRUE(fork.ok()) << fork.status();
  ASSERT_TRUE(Prefill(**fork, prompt, kDocTokens, prompt.tokens).ok());
  auto own = b->OpenSequence("own", kLayout);
  ASSERT_TRUE(own.ok());
  ASSERT_TRUE(Prefill(**own, prompt, 0, prompt.tokens).ok());
  absl::StatusOr<std::vector<float>> want = Decode(**own, 0, 10);
  absl::StatusOr<std::vector<float>> got = Decode(**fork, 0, 10);
  ASSERT_TRUE(want.ok() && got.ok()) << got.status();
  EXPECT_EQ(std::memcmp(got->data(), want->data(), got->size() * sizeof(float)), 0);

  // A third tenant sees nothing, even naming the owner.
  auto c = Connect(daemon_.target(), "tenant-c");
  auto theirs = c->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(theirs.ok());
  EXPECT_FALSE(theirs->has_value());
  EXPECT_EQ(c->OpenSequenceFrom("stolen", named).status().code(), absl::StatusCode::kNotFound);

  // The owner keeps the document while the other tenant's fork uses it; a revoke stops new
  // finds and forks, not the fork that exists.
  auto reopened = a->ReopenSequence("doc");
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->Close(/*drop=*/true).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*reopened)->Revoke("tenant-b").ok());
  auto after = b->FindPrefix(prompt.ids, "m", kLayout);
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
  EXPECT_EQ(b->OpenSequenceFrom("late", named).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(Decode(**fork, 10, 3).ok());
  ASSERT_TRUE((*fork)->Close(/*drop=*/true).ok());
  auto again = a->ReopenSequence("doc");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->Close(/*drop=*/true).ok());
}

TEST_F(SessionTest, ResumedSequenceContinuesAsTheUninterruptedDecode) {
  const Prompt prompt(150);
  auto engine = Connect(daemon_.target(), "tenant-a");
  auto reference = engine->OpenSequence("reference", kLayout);
  ASSERT_TRUE(reference.ok());
  ASSERT_TRUE(Prefill(**reference, prompt, 0, prompt.tokens).ok());
  absl::StatusOr<std::vector<float>> want = Decode(**reference, 0, 30);
  ASSERT_TRUE(want.ok()) << want.status();
  const size_t per_step = static_cast<size_t>(kLayout.num_layers) * kLayout.num_q_heads * kDim;

  {
    auto worker = Connect(daemon_.target(), "tenant-a");
    auto seq = worker->OpenSequence("session", kLayout);
    ASSERT_TRUE(seq.ok());
    ASSERT_TRUE(Prefill(**seq, prompt, 0, prompt.tokens).ok());
    // 13 steps checkpointed (a window of 8 offloaded on the way), then 2 more that are lost
    // with the worker; the second window's offload lands before the loss.
    ASSERT_TRUE(Decode(**seq, 0, 12, /*checkpoint=*/true).ok());
    ASSERT_TRUE(Decode(**seq, 12, 1).ok());
    ASSERT_TRUE((*seq)->Checkpoint("engine at 13").ok());
    ASSERT_TRUE(Decode(**seq, 13, 4).ok());
  }
  auto fresh = Connect(daemon_.target(), "tenant-a");
  auto seq = fresh->ResumeSequence("session");
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ((*seq)->num_tokens(), prompt.tokens + 13);
  EXPECT_EQ((*seq)->engine_state(), "engine at 13");
  absl::StatusOr<std::vector<float>> got = Decode(**seq, 13, 17, /*checkpoint=*/true);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 17 * per_step);
  EXPECT_EQ(std::memcmp(got->data(), want->data() + 13 * per_step, got->size() * sizeof(float)),
            0);

  auto never = fresh->OpenSequence("never-checkpointed", kLayout);
  ASSERT_TRUE(never.ok());
  EXPECT_EQ(fresh->ResumeSequence("never-checkpointed").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace clusterkv
