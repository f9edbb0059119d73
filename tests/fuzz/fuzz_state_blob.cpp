// fuzz_state_blob: arbitrary bytes into restore_state().
//
// The target is a layer_state of a configuration drawn from the first bytes (fp32, bf16 or fp16
// storage, with or without FAM and Φ), possibly with tokens already in it. The blob is either
//   0  the fuzzer's bytes as they are;
//   1  a real blob of a state of that configuration, with header fields and payload bytes
//      overwritten by the fuzzer and the checksum recomputed, so that every check behind the
//      checksum is reached;
//   2  like 1, with the checksum left as it is (a corrupt blob).
// The status is predicted from the layout documented in fam/state_io.hpp, written out here as
// byte offsets: the library must agree. A rejected blob leaves the target bitwise unchanged; an
// accepted one saves back to the same bytes, and the state then takes tokens (or refuses them
// with the status of its phase) without crashing.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "fuzz_support.hpp"  // first: FAM_ASSERT

#include "fam/fam.hpp"

namespace {

using fam::index_t;
using fam::status;
using cfg_t = fam::dynamic_config;
using blob_t = std::vector<unsigned char>;

// The documented layout (fam/state_io.hpp), as offsets.
constexpr std::size_t kMagic = 0, kVersion = 8, kByteOrder = 12, kHeaderBytes = 16, kD = 24,
                      kB = 32, kM = 40, kF = 48, kH = 56, kHkv = 64, kPhi = 72, kOffset = 80,
                      kScale = 88, kTokens = 96, kPhase = 104, kFresh = 108, kKv = 112,
                      kPayloadBytes = 120, kPayload = 128, kChecksum = 8;
constexpr std::uint32_t kHeaderSize = 120;

template <class T>
T load(const blob_t& b, std::size_t at) {
  T x;
  std::memcpy(&x, b.data() + at, sizeof x);
  return x;
}
template <class T>
void store(blob_t& b, std::size_t at, T x) {
  std::memcpy(b.data() + at, &x, sizeof x);
}

std::uint64_t fnv1a(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/// The status the documentation promises for `blob` restored into a state of `c` whose
/// storage takes `payload` bytes and whose kv storage type has code `kv`.
status predict(const blob_t& b, const cfg_t& c, std::uint64_t payload, std::uint32_t kv) {
  if (b.size() < kPayload + kChecksum) return status::corrupt_state;
  if (std::memcmp(b.data() + kMagic, "FAMSTATE", 8) != 0) return status::corrupt_state;
  if (load<std::uint32_t>(b, kVersion) != 1) return status::incompatible_state;
  const std::uint32_t bom = load<std::uint32_t>(b, kByteOrder);
  if (bom == 0x04030201u) return status::incompatible_state;  // the other byte order
  if (bom != 0x01020304u) return status::corrupt_state;
  if (load<std::uint32_t>(b, kHeaderBytes) != kHeaderSize) return status::corrupt_state;
  const std::uint64_t have = b.size() - kPayload - kChecksum;
  if (load<std::uint64_t>(b, kPayloadBytes) != have) return status::corrupt_state;
  if (fnv1a(b.data(), b.size() - kChecksum) != load<std::uint64_t>(b, b.size() - kChecksum))
    return status::corrupt_state;
  // well-formed: is it this configuration?
  const double scale = c.scale();
  if (load<std::int64_t>(b, kD) != c.head_dim() || load<std::int64_t>(b, kB) != c.block_size() ||
      load<std::int64_t>(b, kM) != c.mem_segments() || load<std::int64_t>(b, kF) != c.fam_len() ||
      load<std::int64_t>(b, kH) != c.heads || load<std::int64_t>(b, kHkv) != c.kv_heads ||
      load<std::int64_t>(b, kPhi) != c.phi_dim ||
      load<std::int64_t>(b, kOffset) != c.position_offset ||
      std::memcmp(b.data() + kScale, &scale, 8) != 0 || load<std::uint32_t>(b, kKv) != kv ||
      have != payload)
    return status::incompatible_state;
  // metadata no state can have
  const std::int64_t tokens = load<std::int64_t>(b, kTokens);
  const std::uint32_t phase = load<std::uint32_t>(b, kPhase),
                      fresh = load<std::uint32_t>(b, kFresh);
  if (tokens < 0 || tokens > std::numeric_limits<std::int64_t>::max() / 4 || fresh > 1 || phase > 2)
    return status::corrupt_state;
  const bool has_fam = c.fam_len() > 0;
  if (phase == 0 && !(has_fam && tokens == 0)) return status::corrupt_state;
  if (phase == 2 && !(has_fam && tokens % c.block_size() == 0 && tokens > 0))
    return status::corrupt_state;
  return status::ok;
}

template <class KV>
blob_t blob_of(const fam::layer_state<cfg_t, KV>& st) {
  blob_t b(fam::serialized_size(st));
  const status s = fam::save_state(st, b.data(), b.size());
  FUZZ_CHECK(s == status::ok, "save_state: %s", fam::to_string(s));
  return b;
}

template <class KV>
void run(fuzz::bytes_in& in, const cfg_t& c, std::uint32_t kv_code) {
  using state_t = fam::layer_state<cfg_t, KV>;
  const index_t D = c.head_dim(), B = c.block_size(), F = c.fam_len(), H = c.heads,
                Hkv = c.kv_heads;
  const std::uint8_t mode = in.byte() % 3;
  const index_t fed = in.range(0, 3 * B);  // tokens the target (and the source) have seen

  // a state with `fed` tokens through the weight-free loop (SPEC §6 when H == Hkv)
  std::vector<float> x(static_cast<std::size_t>(std::max<index_t>(1, (3 * B + F) * H * D)));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = float(int(i % 7) - 3) * 0.25f;
  auto feed = [&](state_t& st, index_t n) {
    if (F > 0) {
      const auto fq = fam::make_view<const float>(x.data(), F, H, D);
      const auto fk = fam::make_view<const float>(x.data(), F, Hkv, D);
      const auto ph = fam::make_view<const float>(x.data(), F, 1, c.phi_dim);
      FUZZ_CHECK(fam::begin_fam(st, fq, fk, fk, ph) == status::ok, "begin_fam");
    }
    std::vector<float> out(static_cast<std::size_t>(std::max<index_t>(1, n * H * D)));
    for (index_t done = 0; done < n;) {
      index_t got = 0;
      const status s =
          fam::attend(st, fam::make_view<const float>(x.data(), n, H, D).rows_from(done, n - done),
                      fam::make_view<const float>(x.data(), n, Hkv, D).rows_from(done, n - done),
                      fam::make_view<const float>(x.data(), n, Hkv, D).rows_from(done, n - done),
                      fam::make_view(out.data(), n, H, D).rows_from(done, n - done), {}, &got);
      FUZZ_CHECK(s == status::ok, "attend: %s", fam::to_string(s));
      done += got;
      if (st.phase() == fam::fam_phase::pending && done < n) {
        const auto fq = fam::make_view<const float>(x.data(), F, H, D);
        const auto fk = fam::make_view<const float>(x.data(), F, Hkv, D);
        const auto ph = fam::make_view<const float>(x.data(), F, 1, c.phi_dim);
        FUZZ_CHECK(fam::update_fam(st, fq, fk, fk, ph) == status::ok, "update_fam");
      }
    }
  };

  state_t target;
  FUZZ_CHECK(target.init(c) == status::ok, "init");
  if (in.flag()) feed(target, fed);

  blob_t blob;
  if (mode == 0) {
    std::size_t n = 0;
    const std::uint8_t* p = in.rest(&n);
    blob.assign(p, p + n);
  } else {
    state_t source;
    FUZZ_CHECK(source.init(c) == status::ok, "init");
    feed(source, in.range(0, 3 * B));
    blob = blob_of(source);
    // overwrite fields and bytes: (where, value) pairs
    const std::size_t fields[] = {kVersion, kByteOrder, kHeaderBytes, kD,   kB,           kM,
                                  kF,       kH,         kHkv,         kPhi, kOffset,      kScale,
                                  kTokens,  kPhase,     kFresh,       kKv,  kPayloadBytes};
    const index_t edits = in.range(0, 6);
    for (index_t e = 0; e < edits; ++e) {
      const std::uint8_t what = in.byte();
      if (what < 200) {  // a header field: 4 or 8 bytes, a small or an extreme value
        const std::size_t at = fields[what % 17];
        const bool wide = at >= kD && at < kPhase ? true : at == kPayloadBytes;
        const std::uint8_t kind = in.byte();
        std::uint64_t v = in.u64(kind & 1 ? 8 : 1);
        if (kind & 2) v = load<std::uint64_t>(blob, at) + (kind & 4 ? 1 : std::uint64_t(-1));
        if (wide) {
          store<std::uint64_t>(blob, at, v);
        } else {
          store<std::uint32_t>(blob, at, static_cast<std::uint32_t>(v));
        }
      } else if (what < 230) {  // a payload byte
        if (blob.size() > kPayload + kChecksum)
          blob[kPayload + in.u64(4) % (blob.size() - kPayload - kChecksum)] ^= in.byte() | 1u;
      } else if (what < 245) {  // cut or extend
        const std::size_t n = in.range(0, 40);
        if (what & 1) {
          blob.resize(blob.size() - std::min(n, blob.size()));
        } else {
          blob.insert(blob.end() - static_cast<std::ptrdiff_t>(std::min(blob.size(), kChecksum)), n,
                      0);
        }
      } else {  // the magic
        if (!blob.empty()) blob[in.byte() % std::min<std::size_t>(8, blob.size())] ^= 0x20;
      }
    }
    if (mode == 1 && blob.size() >= kChecksum)
      store<std::uint64_t>(blob, blob.size() - kChecksum,
                           fnv1a(blob.data(), blob.size() - kChecksum));
  }

  const blob_t before = blob_of(target);
  const index_t tokens = target.tokens();
  const auto phase = target.phase();
  const bool fresh = target.fresh();
  const status want =
      predict(blob, c, fam::serialized_size(target) - kPayload - kChecksum, kv_code);
  const status got = fam::restore_state(target, blob.data(), blob.size());
  FUZZ_CHECK(got == want, "restore_state of %zu bytes (mode %d): '%s', documented '%s'",
             blob.size(), int(mode), fam::to_string(got), fam::to_string(want));
  if (got != status::ok) {
    FUZZ_CHECK(blob_of(target) == before && target.tokens() == tokens && target.phase() == phase &&
                   target.fresh() == fresh,
               "a rejected blob changed the state");
    return;
  }
  FUZZ_CHECK(blob_of(target) == blob, "an accepted blob does not save back to itself");
  FUZZ_CHECK(target.tokens() == load<std::int64_t>(blob, kTokens), "tokens() after restore");
  // the restored state takes tokens: up to the end of its block, in the status of its phase,
  // unless they would take it past max_tokens (too_large, checked first, state unchanged)
  const index_t n = std::min<index_t>(2, B - target.block_offset());
  std::vector<float> out(static_cast<std::size_t>(n * H * D), 0.0f);
  index_t consumed = 0;
  const status phase_status = target.phase() == fam::fam_phase::none ? status::fam_not_installed
                              : target.phase() == fam::fam_phase::pending
                                  ? status::fam_update_pending
                                  : status::ok;
  const status want_attend =
      n > fam::max_tokens - target.tokens() ? status::too_large : phase_status;
  const status s = fam::attend(target, fam::make_view<const float>(x.data(), n, H, D),
                               fam::make_view<const float>(x.data(), n, Hkv, D),
                               fam::make_view<const float>(x.data(), n, Hkv, D),
                               fam::make_view(out.data(), n, H, D), {}, &consumed);
  FUZZ_CHECK(s == want_attend, "attend after restore: '%s', documented '%s'", fam::to_string(s),
             fam::to_string(want_attend));
  if (s != status::ok)
    FUZZ_CHECK(consumed == 0 && blob_of(target) == blob, "a refused attend changed the state");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::bytes_in in(data, size);
  const index_t D = in.range(1, 6), B = in.range(1, 5), M = in.range(0, 3), F = in.range(0, 3);
  const index_t H = in.range(1, 3);
  cfg_t c(D, B, M, F);
  c.set_heads(H, in.flag() ? 1 : H);
  c.phi_dim = in.range(0, 2);
  const std::uint8_t extra = in.byte();
  if (extra & 1) c.set_scale(0.75);
  if (extra & 2) c.position_offset = -5;

  // argument errors first: these never depend on the bytes
  {
    fam::layer_state<cfg_t> none;
    unsigned char one = 0;
    FUZZ_CHECK(fam::restore_state(none, &one, 1) == status::not_initialized, "uninitialized");
    fam::layer_state<cfg_t> st;
    FUZZ_CHECK(st.init(c) == status::ok, "init");
    FUZZ_CHECK(fam::restore_state(st, nullptr, 5) == status::null_pointer, "null blob");
    FUZZ_CHECK(fam::restore_state(st, nullptr, 0) == status::corrupt_state, "empty blob");
  }
  switch ((extra >> 2) % 3) {
    case 0:
      run<float>(in, c, 0);
      break;
    case 1:
      run<fam::bf16>(in, c, 1);
      break;
    default:
      run<fam::fp16>(in, c, 2);
  }
  return 0;
}
