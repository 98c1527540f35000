// TLS on the daemon's TCP port, from client::Connection (tls_root_cert_file) and the admin CLI
// (--tls_root_cert): a self-signed certificate for localhost / 127.0.0.1 is generated at test
// time with the openssl CLI, the daemon serves it with --auth=token, and
//   - a TLS client with a valid token opens, puts and fetches bit-exact;
//   - a TLS client with a wrong token gets UNAUTHENTICATED;
//   - a plaintext client on the TLS port, a client trusting another root and a client checking
//     the wrong name all fail the handshake: UNAVAILABLE.
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "gtest/gtest.h"
#include "server/auth/credentials.h"
#include "tests/integration/daemon_fixture.h"

#ifndef CLUSTERKV_CLI_BIN
#error "CLUSTERKV_CLI_BIN must name the clusterkv binary"
#endif

namespace clusterkv::testing {
namespace {

constexpr char kOpenssl[] = "/usr/bin/openssl";
constexpr char kToken[] = "tls-token-of-tenant-a-0123456789";

bool Exists(const std::string& path) { return std::ifstream(path).good(); }

// A self-signed certificate (RSA 2048, one day) for CN=localhost, SAN localhost + 127.0.0.1.
absl::Status MakeCertificate(const std::string& cert, const std::string& key) {
  absl::StatusOr<ProcessResult> r = RunProcess(
      {kOpenssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
       "-days", "1", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=DNS:localhost,IP:127.0.0.1"},
      absl::Seconds(60));
  if (!r.ok()) return r.status();
  if (r->exit_status != 0 || !Exists(cert) || !Exists(key)) {
    return absl::InternalError(absl::StrCat("openssl failed (", r->exit_status, "): ", r->output));
  }
  return absl::OkStatus();
}

class SecurityTlsTest : public ::testing::Test {
 protected:
  SecurityTlsTest() : files_("clusterkv-tls") {}

  void SetUp() override {
    if (!Exists(kOpenssl)) GTEST_SKIP() << kOpenssl << " is missing";
    ASSERT_TRUE(MakeCertificate(cert(), files_.Sub("key.pem")).ok());
    {
      std::ofstream out(files_.Sub("tokens"));
      out << "tenant-a:" << server::auth::ToHex(server::auth::Sha256(kToken)) << "\n";
      ASSERT_TRUE(out.good());
    }
    DaemonProcessOptions options;
    options.flags = {"--auth=token", "--tokens_file=" + files_.Sub("tokens"),
                     "--tcp_address=127.0.0.1:0", "--tls_cert=" + cert(),
                     "--tls_key=" + files_.Sub("key.pem")};
    daemon_ = std::make_unique<DaemonProcess>(options);
    const absl::Status started = daemon_->Start();
    ASSERT_TRUE(started.ok()) << started << "\n" << daemon_->output();
    // "clusterkvd: serving on unix:... and tcp port N (...)".
    const std::string out = daemon_->output();
    const size_t at = out.find("tcp port ");
    ASSERT_NE(at, std::string::npos) << out;
    const size_t begin = at + std::string("tcp port ").size();
    const size_t end = out.find_first_not_of("0123456789", begin);
    int port = 0;
    ASSERT_TRUE(absl::SimpleAtoi(out.substr(begin, end - begin), &port)) << out;
    ASSERT_GT(port, 0);
    tcp_ = absl::StrCat("127.0.0.1:", port);
  }

  void TearDown() override {
    if (daemon_ != nullptr && daemon_->running()) {
      absl::StatusOr<int> code = daemon_->Stop();
      EXPECT_TRUE(code.ok() && *code == 0) << daemon_->output();
    }
  }

  std::string cert() const { return files_.Sub("cert.pem"); }

  // TLS (roots = the daemon's own certificate) unless `roots` is "" ; one attempt per call.
  client::ConnectionOptions Options(const std::string& token, const std::string& roots) const {
    client::ConnectionOptions o;
    o.target = tcp_;
    o.tenant = "ignored-by-token-auth";
    o.bearer_token = token;
    o.tls_root_cert_file = roots;
    o.call_timeout = absl::Seconds(20);
    o.retry.max_attempts = 1;
    return o;
  }

  static std::unique_ptr<client::Connection> Connect(client::ConnectionOptions o) {
    absl::StatusOr<std::unique_ptr<client::Connection>> conn = client::Connection::Create(o);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  static absl::Status StatsStatus(client::Connection& conn) { return conn.Stats().status(); }

  ScratchDir files_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::string tcp_;
};

TEST_F(SecurityTlsTest, ValidTokenOverTlsOpensPutsAndFetchesBitExact) {
  std::unique_ptr<client::Connection> conn = Connect(Options(kToken, cert()));
  ASSERT_NE(conn, nullptr);
  const SequenceData data = MakeSequenceData(/*seed=*/81, /*clusters=*/3, /*layers=*/2);

  v1::OpenSequenceRequest open;
  open.set_sequence_id("tls-seq");
  *open.mutable_layout() = TestLayout();
  absl::StatusOr<v1::OpenSequenceResponse> opened = conn->OpenSequence(open);
  ASSERT_TRUE(opened.ok()) << opened.status();

  std::vector<v1::PutClustersRequest> messages;
  for (const v1::ClusterBlock& block : data.blocks) {
    v1::PutClustersRequest m;
    m.set_sequence_id("tls-seq");
    *m.add_blocks() = block;
    messages.push_back(std::move(m));
  }
  v1::PutClustersRequest last;
  last.set_sequence_id("tls-seq");
  last.set_num_tokens(data.num_tokens);
  for (const v1::HeadIndex& index : data.indexes) *last.add_indexes() = index;
  messages.push_back(std::move(last));
  absl::StatusOr<v1::PutClustersResponse> put = conn->PutClusters(messages);
  ASSERT_TRUE(put.ok()) << put.status();

  v1::FetchClustersRequest fetch;
  fetch.set_sequence_id("tls-seq");
  for (const v1::ClusterBlock& block : data.blocks) *fetch.add_clusters() = block.id();
  std::vector<v1::ClusterBlock> got;
  const absl::Status fetched = conn->FetchClusters(fetch, [&](const v1::ClusterBlock& b) {
    got.push_back(b);
    return absl::OkStatus();
  });
  ASSERT_TRUE(fetched.ok()) << fetched;
  ASSERT_EQ(got.size(), data.blocks.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(SameRef(got[i].id(), data.blocks[i].id())) << i;
    EXPECT_EQ(got[i].num_tokens(), data.blocks[i].num_tokens()) << i;
    EXPECT_TRUE(got[i].data() == data.blocks[i].data()) << "block " << i << " differs";
  }

  // The same over a target name override (the certificate's DNS name).
  client::ConnectionOptions o = Options(kToken, cert());
  o.tls_target_name_override = "localhost";
  std::unique_ptr<client::Connection> named = Connect(o);
  ASSERT_NE(named, nullptr);
  absl::StatusOr<v1::ListSequencesResponse> listed = named->ListSequences();
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sequences_size(), 1);
}

TEST_F(SecurityTlsTest, WrongTokenOverTlsIsUnauthenticated) {
  std::unique_ptr<client::Connection> conn = Connect(Options("not-the-token", cert()));
  ASSERT_NE(conn, nullptr);
  const absl::Status s = StatsStatus(*conn);
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  std::unique_ptr<client::Connection> none = Connect(Options("", cert()));
  ASSERT_NE(none, nullptr);
  const absl::Status s2 = StatsStatus(*none);
  EXPECT_TRUE(absl::IsUnauthenticated(s2)) << s2;
}

TEST_F(SecurityTlsTest, PlaintextClientOnTheTlsPortIsUnavailable) {
  std::unique_ptr<client::Connection> conn = Connect(Options(kToken, /*roots=*/""));
  ASSERT_NE(conn, nullptr);
  const absl::Status s = StatsStatus(*conn);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
}

TEST_F(SecurityTlsTest, UntrustedRootOrWrongNameIsUnavailable) {
  ASSERT_TRUE(MakeCertificate(files_.Sub("other.pem"), files_.Sub("other-key.pem")).ok());
  std::unique_ptr<client::Connection> other = Connect(Options(kToken, files_.Sub("other.pem")));
  ASSERT_NE(other, nullptr);
  const absl::Status s = StatsStatus(*other);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;

  client::ConnectionOptions o = Options(kToken, cert());
  o.tls_target_name_override = "not-localhost.example";
  std::unique_ptr<client::Connection> wrong_name = Connect(o);
  ASSERT_NE(wrong_name, nullptr);
  const absl::Status s2 = StatsStatus(*wrong_name);
  EXPECT_TRUE(absl::IsUnavailable(s2)) << s2;

  // The daemon still serves a good client afterwards.
  std::unique_ptr<client::Connection> good = Connect(Options(kToken, cert()));
  ASSERT_NE(good, nullptr);
  const absl::Status s3 = StatsStatus(*good);
  EXPECT_TRUE(s3.ok()) << s3;
}

TEST_F(SecurityTlsTest, BadTlsOptionsAreRefused) {
  client::ConnectionOptions o = Options(kToken, "");
  o.tls_target_name_override = "localhost";
  EXPECT_TRUE(absl::IsInvalidArgument(client::Connection::Create(o).status()));
  o = Options(kToken, files_.Sub("no-such-roots.pem"));
  EXPECT_TRUE(absl::IsNotFound(client::Connection::Create(o).status()));
}

TEST_F(SecurityTlsTest, AdminCliSpeaksTls) {
  absl::StatusOr<ProcessResult> ok =
      RunProcess({CLUSTERKV_CLI_BIN, "--target=" + tcp_, std::string("--token=") + kToken,
                  "--tls_root_cert=" + cert(), "stats"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->exit_status, 0) << ok->output;

  absl::StatusOr<ProcessResult> plain = RunProcess(
      {CLUSTERKV_CLI_BIN, "--target=" + tcp_, std::string("--token=") + kToken, "stats"});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->exit_status, 1) << plain->output;

  absl::StatusOr<ProcessResult> missing =
      RunProcess({CLUSTERKV_CLI_BIN, "--target=" + tcp_, "--tls_root_cert=" + files_.Sub("nope"),
                  "stats"});
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->exit_status, 2) << missing->output;
}

}  // namespace
}  // namespace clusterkv::testing
