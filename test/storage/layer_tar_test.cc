// The bootstrap layer reader against good layers (gzip, zstd, plain; pax,
// GNU and ustar-prefix long names) and hostile ones: truncated, huge sizes,
// bad checksums, garbage, decompression bombs. Hostile input is always a
// clear error, never a crash or an allocation the size a header claims.
#include "storage/layer_tar.h"

#include <gtest/gtest.h>

#include <random>

#include "storage/codec.h"
#include "test/support/oci_image.h"

namespace rfs::storage {
namespace {

using base::StatusCode;
using testing::TarWriter;

std::vector<uint8_t> Boot(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::string_view View(const std::vector<uint8_t>& v) {
  return std::string_view(reinterpret_cast<const char*>(v.data()), v.size());
}

std::vector<TarEntry> Entries(const std::vector<uint8_t>& tar) {
  std::vector<TarEntry> out;
  base::Status s = ForEachTarEntry(tar, [&](const TarEntry& e) {
    out.push_back(e);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(LayerTarTest, FindsTheBootstrapInGzipZstdAndPlainLayers) {
  const auto boot = Boot(100000, 1);
  const std::string id(64, 'a');
  const std::vector<uint8_t> meta = Boot(8192, 2);
  const auto tar = testing::BootstrapLayerTar(boot, {{id, meta}});
  for (Compressor c : {Compressor::kGzip, Compressor::kZstd, Compressor::kNone}) {
    std::vector<uint8_t> layer = c == Compressor::kNone ? tar : *Compress(c, tar);
    auto plain = DecompressLayer(layer, 10 << 20);
    ASSERT_TRUE(plain.ok()) << CompressorName(c) << ": " << plain.status();
    EXPECT_EQ(*plain, tar);
    auto got = ReadBootstrapLayer(*plain, /*keep_blob_meta=*/true);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->bootstrap_name, "image/image.boot");
    EXPECT_EQ(got->bootstrap, boot);
    ASSERT_EQ(got->blob_meta.size(), 1u);
    EXPECT_EQ(got->blob_meta.at(id), meta);
    EXPECT_TRUE(ReadBootstrapLayer(*plain, false)->blob_meta.empty());
  }
  // Concatenated gzip members are one stream.
  auto half1 = *Compress(Compressor::kGzip, std::vector<uint8_t>(tar.begin(), tar.begin() + 1024));
  auto half2 = *Compress(Compressor::kGzip, std::vector<uint8_t>(tar.begin() + 1024, tar.end()));
  half1.insert(half1.end(), half2.begin(), half2.end());
  EXPECT_EQ(*DecompressLayer(half1, 10 << 20), tar);
}

TEST(LayerTarTest, NamesLongAndShortAndLegacyLocation) {
  const std::string long_dir = "d/" + std::string(120, 'x') + "/" + std::string(90, 'y');
  for (auto how : {TarWriter::LongName::kPax, TarWriter::LongName::kGnu,
                   TarWriter::LongName::kUstarPrefix}) {
    TarWriter t;
    t.Add(long_dir + "/file", "long", '0', how);
    t.Add("./image/image.boot", "boot!");
    const auto tar = t.Finish();  // entries point into it
    auto e = Entries(tar);
    ASSERT_EQ(e.size(), 2u);
    EXPECT_EQ(e[0].name, long_dir + "/file");
    EXPECT_EQ(View(std::vector<uint8_t>(e[0].data.begin(), e[0].data.end())), "long");
    EXPECT_EQ(e[1].name, "image/image.boot");
    auto got = ReadBootstrapLayer(t.Finish(), false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(View(got->bootstrap), "boot!");
  }
  // A long name that only ends in image/image.boot is not the bootstrap.
  {
    TarWriter t;
    t.Add(std::string(150, 'z') + "/image/image.boot", "no", '0', TarWriter::LongName::kPax);
    EXPECT_EQ(ReadBootstrapLayer(t.Finish(), false).status().code(), StatusCode::kNotFound);
  }
  // The legacy top-level image.boot, and image/image.boot preferred over it.
  {
    TarWriter t;
    t.Add("/image.boot", "legacy");
    auto got = ReadBootstrapLayer(t.Finish(), false);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->bootstrap_name, "image.boot");
    EXPECT_EQ(View(got->bootstrap), "legacy");
    t.Add("image/image.boot", "current");
    EXPECT_EQ(View(ReadBootstrapLayer(t.Finish(), false)->bootstrap), "current");
    // Later members of a name replace earlier ones, as when unpacking.
    t.Add("image/image.boot", "newest");
    EXPECT_EQ(View(ReadBootstrapLayer(t.Finish(), false)->bootstrap), "newest");
  }
  // A pax size overrides the header's; links carry no data.
  {
    TarWriter t;
    t.AddRawHeader("PaxHeaders/x", 'x', 12);
    t.AddBytes("12 size=600\n");
    t.AddRawHeader("image/image.boot", '0', 1);  // the header's size is wrong
    t.AddBytes(std::string(600, 'B'));
    t.AddRawHeader("image/link", '1', 999999);  // ignored size on a hard link
    t.Add("after", "ok");
    const auto tar = t.Finish();
    auto e = Entries(tar);
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0].size, 600u);
    EXPECT_EQ(e[1].size, 0u);
    EXPECT_EQ(e[2].name, "after");
  }
}

TEST(LayerTarTest, NotABootstrapLayer) {
  TarWriter t;
  t.Add("etc/passwd", "root:x:0:0");
  t.Add("image/", "", '5');
  auto r = ReadBootstrapLayer(t.Finish(), false);
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("no image/image.boot"), std::string::npos) << r.status();
  TarWriter sym;
  sym.Add("image/image.boot", "", '2');
  EXPECT_EQ(ReadBootstrapLayer(sym.Finish(), false).status().code(), StatusCode::kDataLoss);
  TarWriter empty;
  empty.Add("image/image.boot", "");
  EXPECT_EQ(ReadBootstrapLayer(empty.Finish(), false).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(ReadBootstrapLayer({}, false).status().code(), StatusCode::kNotFound);
}

// Every way a tar can lie is kDataLoss naming the offset.
TEST(LayerTarTest, HostileTarsAreDataLoss) {
  const auto good = testing::BootstrapLayerTar(Boot(3000, 3));
  auto expect_loss = [](const std::vector<uint8_t>& tar, const std::string& says,
                        const std::string& label) {
    auto r = ReadBootstrapLayer(tar, true);
    ASSERT_FALSE(r.ok()) << label;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << label << ": " << r.status();
    EXPECT_NE(r.status().message().find(says), std::string::npos) << label << ": " << r.status();
  };
  // Truncated at every block boundary and mid-block: never a crash; mid
  // data or mid header is an error.
  const size_t boot_end = 512 + 512 + base::AlignUp(3000, 512);
  for (size_t cut = 1; cut < good.size(); cut += 97) {
    std::vector<uint8_t> t(good.begin(), good.begin() + static_cast<ptrdiff_t>(cut));
    auto r = ReadBootstrapLayer(t, false);
    if (cut < boot_end && (cut % 512 != 0 || cut >= 1024)) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << "cut at " << cut << ": " << r.status();
    } else if (r.ok()) {
      EXPECT_EQ(r->bootstrap, Boot(3000, 3)) << "cut at " << cut;
    }
  }
  // Bad checksum.
  {
    auto t = good;
    t[512 + 10] ^= 0x40;  // a byte of the image.boot header's name
    expect_loss(t, "bad header checksum at offset 512", "checksum");
  }
  // A size far past the archive (octal and base-256), after a valid checksum.
  for (uint64_t size : {uint64_t{077777777777}, uint64_t{1} << 62}) {
    TarWriter t;
    t.Add("image/", "", '5');
    const size_t at = t.AddRawHeader("image/image.boot", '0', 0);
    uint8_t* h = t.bytes().data() + at;
    if (size < (uint64_t{1} << 33)) {
      std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011llo",
                    static_cast<unsigned long long>(size));
    } else {
      std::memset(h + 124, 0, 12);
      h[124] = 0x80;
      for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<uint8_t>(size >> (8 * i));
    }
    testing::SetTarChecksum(h);
    t.AddBytes("tiny");
    expect_loss(t.Finish(), "bytes of data but the archive ends", "huge size");
  }
  // Garbage in the size field; negative base-256.
  for (uint8_t first : {uint8_t{'9'}, uint8_t{0xff}}) {
    TarWriter t;
    const size_t at = t.AddRawHeader("image/image.boot", '0', 4);
    t.bytes()[at + 124] = first;
    testing::SetTarChecksum(t.bytes().data() + at);
    t.AddBytes("boot");
    expect_loss(t.Finish(), "bad size field", "size field");
  }
  // Extended headers: malformed pax, a record length past its header, a
  // huge pax header, a long name without a member, a GNU name of 1 MiB.
  {
    TarWriter t;
    t.AddRawHeader("PaxHeaders/x", 'x', 10);
    t.AddBytes("9999 path=x");
    t.Add("image/image.boot", "b");
    expect_loss(t.Finish(), "malformed pax record", "pax length");
  }
  {
    TarWriter t;
    t.AddRawHeader("PaxHeaders/x", 'x', 12);
    t.AddBytes("12 pathxxxx\n");
    t.Add("image/image.boot", "b");
    expect_loss(t.Finish(), "pax record without '='", "pax =");
  }
  {
    TarWriter t;
    t.AddRawHeader("PaxHeaders/x", 'x', 12);
    t.AddBytes("12 size=1x1\n");
    t.Add("image/image.boot", "b");
    expect_loss(t.Finish(), "bad pax size", "pax size");
  }
  {
    TarWriter t;
    t.AddRawHeader("PaxHeaders/x", 'x', 2u << 20);
    t.AddBytes(std::string(2u << 20, '\n'));
    t.Add("image/image.boot", "b");
    expect_loss(t.Finish(), "pax header of", "pax too big");
  }
  {
    TarWriter t;
    t.Add("image/image.boot", "b");
    t.AddRawHeader("././@LongLink", 'L', 5);
    t.AddBytes("name");
    expect_loss(t.Finish(), "extended header without a member", "dangling L");
  }
  {
    TarWriter t;
    t.AddRawHeader("././@LongLink", 'L', 1u << 20);
    t.AddBytes(std::string(1u << 20, 'n'));
    t.Add("image/image.boot", "b");
    expect_loss(t.Finish(), "long name of", "L too big");
  }
  // Not a tar at all.
  expect_loss(std::vector<uint8_t>(2048, 'A'), "bad header checksum at offset 0", "garbage");
}

TEST(LayerTarTest, HostileCompressedLayers) {
  const auto tar = testing::BootstrapLayerTar(Boot(200000, 4));
  const auto gz = *Compress(Compressor::kGzip, tar);
  const auto zs = *Compress(Compressor::kZstd, tar);
  // Truncated streams.
  for (const auto* layer : {&gz, &zs}) {
    for (size_t cut : {size_t{5}, size_t{20}, layer->size() / 2, layer->size() - 1}) {
      std::vector<uint8_t> t(layer->begin(), layer->begin() + static_cast<ptrdiff_t>(cut));
      auto r = DecompressLayer(t, 10 << 20);
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << cut << ": " << r.status();
    }
  }
  // Corrupt data.
  auto bad = gz;
  for (size_t i = 100; i < 140; ++i) bad[i] ^= 0x5a;
  EXPECT_EQ(DecompressLayer(bad, 10 << 20).status().code(), StatusCode::kDataLoss);
  // (zstd frames without a checksum cannot notice flipped data bytes; the
  // layer's sha256, checked before decompressing, does. A reserved header
  // bit set must fail.)
  auto badz = zs;
  badz[4] |= 0x08;
  EXPECT_EQ(DecompressLayer(badz, 10 << 20).status().code(), StatusCode::kDataLoss);
  // Garbage after the stream; zero padding is fine.
  auto trailing = gz;
  trailing.insert(trailing.end(), {'j', 'u', 'n', 'k'});
  EXPECT_EQ(DecompressLayer(trailing, 10 << 20).status().code(), StatusCode::kDataLoss);
  auto padded = gz;
  padded.resize(padded.size() + 100, 0);
  EXPECT_EQ(*DecompressLayer(padded, 10 << 20), tar);
  // Bombs: 64 MiB of zeros compress to almost nothing; the cap stops them
  // without allocating what they expand to.
  std::vector<uint8_t> zeros(64u << 20, 0);
  for (Compressor c : {Compressor::kGzip, Compressor::kZstd}) {
    auto bomb = *Compress(c, zeros);
    ASSERT_LT(bomb.size(), 1u << 20);
    auto r = DecompressLayer(bomb, 1u << 20);
    EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status();
    EXPECT_NE(r.status().message().find("past the limit of 1048576 bytes"), std::string::npos)
        << r.status();
  }
  EXPECT_EQ(DecompressLayer(tar, 100).status().code(), StatusCode::kResourceExhausted);
  // Exactly at the cap is fine.
  EXPECT_TRUE(DecompressLayer(gz, tar.size()).ok());
}

}  // namespace
}  // namespace rfs::storage
