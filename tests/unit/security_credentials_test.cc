// Tenants and security: the tokens file and uid map parsers, SHA-256 and the
// constant-time digest comparison, the authenticator's decision per mode, and the quota checks.
#include <string>

#include "gtest/gtest.h"
#include "server/auth/authenticator.h"
#include "server/auth/credentials.h"
#include "server/auth/tenant_quota.h"

namespace clusterkv::server::auth {
namespace {

std::string Line(const std::string& tenant, const std::string& token) {
  return tenant + ":" + ToHex(Sha256(token)) + "\n";
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(ToHex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ConstantTimeEqualTest, EqualAndEveryPositionDiffering) {
  const Digest a = Sha256("token");
  EXPECT_TRUE(ConstantTimeEqual(a, a));
  for (size_t i = 0; i < a.size(); ++i) {
    Digest b = a;
    b[i] ^= 0x01;
    EXPECT_FALSE(ConstantTimeEqual(a, b)) << "byte " << i;
  }
}

TEST(TokenTableTest, ParsesAndLooksUp) {
  auto table = TokenTable::Parse("# comment\n\n" + Line("alice", "s3cret") + "  " +
                                 Line("bob", "hunter2") + "\r\n");
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 2u);
  EXPECT_EQ(table->Lookup("s3cret"), "alice");
  EXPECT_EQ(table->Lookup("hunter2"), "bob");
  EXPECT_EQ(table->Lookup("s3cret "), std::nullopt);
  EXPECT_EQ(table->Lookup(""), std::nullopt);
  EXPECT_EQ(table->Lookup(ToHex(Sha256("s3cret"))), std::nullopt);  // the digest is no token
}

TEST(TokenTableTest, UpperCaseHexAccepted) {
  std::string hex = ToHex(Sha256("t"));
  for (char& c : hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto table = TokenTable::Parse("x:" + hex);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->Lookup("t"), "x");
}

TEST(TokenTableTest, RejectsBadLinesNamingThem) {
  const std::string good = Line("a", "t");
  for (const std::string& bad : {
           std::string("no-colon-here\n"),
           ":" + ToHex(Sha256("t")) + "\n",                          // empty tenant
           std::string("a:abcd\n"),                                  // short digest
           "a:" + std::string(64, 'g') + "\n",                       // not hex
           "a:" + ToHex(Sha256("t")) + "00\n",                       // long digest
           std::string(129, 'x') + ":" + ToHex(Sha256("t")) + "\n",  // long tenant
           "a\tb:" + ToHex(Sha256("t")) + "\n",                      // control character
       }) {
    auto table = TokenTable::Parse(good + bad);
    ASSERT_FALSE(table.ok()) << bad;
    EXPECT_EQ(table.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(table.status().message().find("line 2"), std::string::npos) << table.status();
  }
  auto twice = TokenTable::Parse(good + Line("b", "t"));
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("twice"), std::string::npos);
}

TEST(PeerTenantMapTest, DefaultMapsEveryUid) {
  const PeerTenantMap map;
  EXPECT_EQ(map.TenantOf(0), "uid-0");
  EXPECT_EQ(map.TenantOf(1000), "uid-1000");
}

TEST(PeerTenantMapTest, FileMapsListedUidsOnly) {
  auto map = PeerTenantMap::Parse("# engines\n1000:engine-a\n 1001 : engine-b \n");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(map->TenantOf(1000), "engine-a");
  EXPECT_EQ(map->TenantOf(1001), "engine-b");
  EXPECT_EQ(map->TenantOf(0), std::nullopt);
  auto empty = PeerTenantMap::Parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->TenantOf(1000), std::nullopt);  // a file that lists nobody admits nobody
}

TEST(PeerTenantMapTest, RejectsBadLines) {
  for (const char* bad : {"1000\n", "abc:t\n", "-1:t\n", "+5:t\n", "4294967295:t\n",
                          "99999999999:t\n", "1000:\n", "1000:a:b\n", "1:a\n1:b\n"}) {
    auto map = PeerTenantMap::Parse(bad);
    EXPECT_FALSE(map.ok()) << bad;
  }
}

Authenticator Make(AuthMode mode, PeerTenantMap peers = {}) {
  auto tokens = TokenTable::Parse(Line("alice", "tok-a") + Line("bob", "tok-b"));
  EXPECT_TRUE(tokens.ok());
  return Authenticator(mode, *std::move(tokens), std::move(peers));
}

TEST(AuthenticatorTest, TokenModeNeedsAValidBearerToken) {
  const Authenticator auth = Make(AuthMode::kToken);
  EXPECT_EQ(*auth.Resolve({"unix:/s", "Bearer tok-a", "bob"}), "alice");  // metadata ignored
  EXPECT_EQ(*auth.Resolve({"ipv4:1.2.3.4:5", "bearer tok-b", std::nullopt}), "bob");
  for (const CallCredentials& bad : {
           CallCredentials{"unix:/s", std::nullopt, "alice"},
           CallCredentials{"unix:/s", "Bearer wrong", std::nullopt},
           CallCredentials{"unix:/s", "tok-a", std::nullopt},  // no scheme
           CallCredentials{"unix:/s", "Basic tok-a", std::nullopt},
           CallCredentials{"unix:/s", "Bearer ", std::nullopt},
           CallCredentials{"unix:/s", "", std::nullopt},
       }) {
    auto tenant = auth.Resolve(bad);
    ASSERT_FALSE(tenant.ok());
    EXPECT_EQ(tenant.status().code(), absl::StatusCode::kUnauthenticated);
    // Missing and wrong credentials read the same.
    EXPECT_EQ(tenant.status().message(), "the call carries no valid credentials for this daemon");
  }
}

TEST(AuthenticatorTest, PeerCredUsesTheConnectionsUid) {
  auto peers = PeerTenantMap::Parse("1000:engine\n");
  ASSERT_TRUE(peers.ok());
  Authenticator auth = Make(AuthMode::kPeerCred, *std::move(peers));
  EXPECT_TRUE(auth.AdmitPeer(7, 1000));
  EXPECT_FALSE(auth.AdmitPeer(8, 1001));                                // not listed: refused
  EXPECT_EQ(*auth.Resolve({"fd:7", std::nullopt, "alice"}), "engine");  // metadata ignored
  EXPECT_EQ(auth.Resolve({"fd:8", std::nullopt, std::nullopt}).status().code(),
            absl::StatusCode::kUnauthenticated);
  // A token on an admitted connection decides; a bad one is refused.
  EXPECT_EQ(*auth.Resolve({"fd:7", "Bearer tok-b", std::nullopt}), "bob");
  EXPECT_EQ(auth.Resolve({"fd:7", "Bearer nope", std::nullopt}).status().code(),
            absl::StatusCode::kUnauthenticated);
  // TCP peers need a token.
  EXPECT_EQ(auth.Resolve({"ipv4:127.0.0.1:9", std::nullopt, "alice"}).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(*auth.Resolve({"ipv4:127.0.0.1:9", "Bearer tok-a", std::nullopt}), "alice");
  // A reused fd number takes the new connection's tenant; a refused one forgets the old.
  EXPECT_FALSE(auth.AdmitPeer(7, 5));
  EXPECT_FALSE(auth.Resolve({"fd:7", std::nullopt, std::nullopt}).ok());
}

TEST(AuthenticatorTest, NoneTrustsMetadata) {
  const Authenticator auth = Make(AuthMode::kNone);
  EXPECT_EQ(*auth.Resolve({"unix:/s", std::nullopt, "mallory"}), "mallory");
  EXPECT_EQ(*auth.Resolve({"unix:/s", std::nullopt, std::nullopt}), "default");
  EXPECT_EQ(auth.Resolve({"unix:/s", std::nullopt, ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AuthModeTest, Parses) {
  EXPECT_EQ(*ParseAuthMode("peercred"), AuthMode::kPeerCred);
  EXPECT_EQ(*ParseAuthMode("token"), AuthMode::kToken);
  EXPECT_EQ(*ParseAuthMode("none"), AuthMode::kNone);
  EXPECT_FALSE(ParseAuthMode("PEERCRED").ok());
  EXPECT_EQ(AuthModeName(AuthMode::kToken), "token");
}

TEST(TenantQuotaTest, BytesAndSequences) {
  TenantQuotas q;
  storage::TenantUsage usage;
  usage.host_bytes = 900;
  usage.ssd_bytes = 500;
  EXPECT_TRUE(CheckByteQuota(q, "t", usage, 1 << 30).ok());  // unlimited
  q.host_bytes = 1000;
  EXPECT_TRUE(CheckByteQuota(q, "t", usage, 100).ok());
  absl::Status over = CheckByteQuota(q, "t", usage, 101);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.message().find("host-tier quota"), std::string::npos) << over;
  q.host_bytes = 0;
  q.ssd_bytes = 1500;  // bounds host + SSD
  EXPECT_TRUE(CheckByteQuota(q, "t", usage, 100).ok());
  EXPECT_EQ(CheckByteQuota(q, "t", usage, 101).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(MakeQuotaHook(q)("t", usage, 100).ok());
  EXPECT_FALSE(MakeQuotaHook(q)("t", usage, 101).ok());

  EXPECT_TRUE(CheckSequenceQuota(q, "t", 1000000).ok());  // unlimited
  q.sequences = 2;
  EXPECT_TRUE(CheckSequenceQuota(q, "t", 1).ok());
  EXPECT_EQ(CheckSequenceQuota(q, "t", 2).code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace clusterkv::server::auth
