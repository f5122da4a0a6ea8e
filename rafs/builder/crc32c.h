// CRC-32C (Castagnoli, iSCSI polynomial 0x1EDC6F41, reflected), the chunk
// checksum of RAFS chunk records (spec RAFS-FORMAT 2.5). Uses the SSE4.2
// crc32 instruction when the CPU has it, a table otherwise.
#pragma once

#include <cstdint>

#include "base/bytes.h"

namespace rfs::rafs::builder {

// CRC-32C of `data` (initial value ~0, final xor ~0): "123456789" -> 0xE3069283.
uint32_t Crc32c(base::ByteSpan data);

}  // namespace rfs::rafs::builder
