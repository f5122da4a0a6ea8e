#include "base/bytes.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "base/deadline.h"
#include "base/unique_fd.h"

namespace rfs::base {
namespace {

TEST(BytesTest, LittleEndianRoundTrip) {
  uint8_t buf[8];
  StoreLe16(buf, 0xBEEF);
  EXPECT_EQ(buf[0], 0xEF);
  EXPECT_EQ(buf[1], 0xBE);
  EXPECT_EQ(LoadLe16(buf), 0xBEEF);
  StoreLe32(buf, 0xE0F5E1E2u);
  EXPECT_EQ(buf[0], 0xE2);
  EXPECT_EQ(LoadLe32(buf), 0xE0F5E1E2u);
  StoreLe64(buf, 0x0123456789ABCDEFull);
  EXPECT_EQ(buf[0], 0xEF);
  EXPECT_EQ(buf[7], 0x01);
  EXPECT_EQ(LoadLe64(buf), 0x0123456789ABCDEFull);
}

TEST(BytesTest, RangeChecksDoNotOverflow) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(RangeInside(0, 10, 10));
  EXPECT_TRUE(RangeInside(10, 0, 10));
  EXPECT_FALSE(RangeInside(5, 6, 10));
  EXPECT_FALSE(RangeInside(11, 0, 10));
  EXPECT_FALSE(RangeInside(8, kMax, 10));
  EXPECT_FALSE(RangeInside(kMax, 2, 10));
  Status s = CheckRange(8, 4, 10, "blob table");
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "blob table: range [8, +4) outside 10 bytes");
}

TEST(BytesTest, Hex) {
  const uint8_t b[] = {0x00, 0x0f, 0xa0, 0xff};
  EXPECT_EQ(ToHex(b), "000fa0ff");
  EXPECT_EQ(*FromHex("000FA0ff"), std::string("\x00\x0f\xa0\xff", 4));
  EXPECT_FALSE(FromHex("abc").ok());
  EXPECT_FALSE(FromHex("zz").ok());
}

TEST(BytesTest, Align) {
  EXPECT_EQ(AlignUp(0, 4096), 0u);
  EXPECT_EQ(AlignUp(1, 4096), 4096u);
  EXPECT_EQ(AlignUp(4096, 4096), 4096u);
  EXPECT_TRUE(IsPowerOfTwo(1 << 20));
  EXPECT_FALSE(IsPowerOfTwo(0));
  EXPECT_FALSE(IsPowerOfTwo(3 << 10));
}

TEST(DeadlineTest, InfiniteAndExpired) {
  EXPECT_FALSE(Deadline::Infinite().Expired());
  EXPECT_EQ(Deadline::Infinite().Remaining(), Deadline::Clock::duration::max());
  Deadline past = Deadline::At(Deadline::Clock::now() - std::chrono::seconds(1));
  EXPECT_TRUE(past.Expired());
  EXPECT_EQ(past.Remaining(), Deadline::Clock::duration::zero());
  Deadline later = Deadline::After(std::chrono::hours(1));
  EXPECT_FALSE(later.Expired());
  EXPECT_EQ(later.Min(past).when(), past.when());
  EXPECT_EQ(Deadline::Infinite().Min(later).when(), later.when());
}

TEST(UniqueFdTest, ClosesOnceAndMoves) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    UniqueFd a(fds[0]);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), fds[0]);
  }
  // Read end closed: writing now fails with EPIPE (SIGPIPE ignored here).
  signal(SIGPIPE, SIG_IGN);
  char c = 'x';
  EXPECT_EQ(write(fds[1], &c, 1), -1);
  close(fds[1]);
}

}  // namespace
}  // namespace rfs::base
