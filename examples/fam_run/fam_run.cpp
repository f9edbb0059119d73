// fam-run: runs fam's attention on .npy files, so that any tool that writes NumPy arrays
// (NumPy, PyTorch, JAX) can cross-check the library from the shell. See --help.
//
// full, swa, bswa: fam::attention over the whole sequence. fam: the weight-free FAM loop of
// SPEC §6, driven through the streaming API (layer_state, begin_fam, attend, update_fam) with
// Qf = Kf = Vf = Φ and Φ[t] = Uf after each complete block.
//
// Every bad input is reported as one line "fam-run: <argument>: <reason>" on stderr with exit
// status 2 before any output exists; outputs are written to temporary files in their target
// directories and renamed into place only when everything succeeded.
//
// fam_run_main() is the whole program and returns its exit status (a bad input unwinds to it,
// never calling exit), so tests/fuzz/fuzz_fam_run.cpp can run it in-process; define
// FAM_RUN_NO_MAIN to compile this file without main().
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "fam/fam.hpp"
#include "fam/support.hpp"
#include "npy.hpp"

namespace {

using fam::index_t;

constexpr int kExitBadInput = 2;
constexpr int kExitFailure = 1;

const char* const kHelp =
    R"(usage: fam-run --variant full|swa|bswa|fam --q Q.npy --k K.npy --v V.npy --out O.npy
               [--window W] [--block B] [--memory M] [--scale S]
               [--fam-init P.npy] [--fam-out PF.npy]

Runs fam's attention (the reference backend) on NumPy .npy files and writes the result as .npy.

Inputs (C order, little-endian '<f4' float32 or '<f8' float64, which is converted to float32;
every value must be finite):
  --q Q.npy        queries [L, H, D]
  --k K.npy        keys    [L, Hkv, D]    H must be a multiple of Hkv (MHA, GQA, MQA);
  --v V.npy        values  [L, Hkv, D]    query head h reads kv head h / (H / Hkv)
Output:
  --out O.npy      float32 [L, H, D]
Variants (docs/spec.md):
  --variant full   causal attention: token n sees keys 0..n
  --variant swa    sliding window: token n sees keys n-W+1..n          (needs --window W >= 1)
  --variant bswa   block sliding window: token n sees the previous M blocks of B tokens
                   and its own block up to itself                     (needs --block B >= 1,
                                                                        --memory M >= 0)
  --variant fam    the weight-free FAM loop of SPEC section 6: BSWA plus F memory rows per
                   head. Needs --block, --memory, --fam-init and H == Hkv.
                   Each block t reads the state Phi[t-1] as F extra keys/values (Qf = Kf = Vf =
                   Phi, no projection); the F rows attend to themselves and the whole block,
                   and Phi[t] = their attention output. Only a complete block updates Phi.
  --fam-init P.npy initial state Phi[-1], [H, F, D] (F = 0 allowed: then fam equals bswa)
  --fam-out PF.npy (optional, fam only) writes the state after the last complete block,
                   [H, F, D] (P itself when no block completes)
Options:
  --scale S        logit scale, finite and > 0 (default 1/sqrt(D))
  --help           this text
Options take their value as the next argument or after '=' (--block=64). An option that the
variant does not use is an error, as is any option given twice.

Exit status: 0 on success; 2 on any bad input (missing or unreadable file, wrong rank, shape or
dtype, malformed or truncated .npy, mismatched lengths or head dims, H % Hkv != 0, non-positive
B or W, negative M, a number that is not numeric or not finite, unknown variant or option),
reported as one line "fam-run: <argument>: <reason>" on stderr; 1 when writing fails.
No output file is created or changed unless the run succeeds: the outputs are written to
temporary files next to their targets and renamed into place at the end.
)";

/// Printable form of a user string for a one-line message (control characters become '?').
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}

void remove_temps();

/// Thrown by die() and --help, caught by fam_run_main(): the exit status.
struct exit_request {
  int code;
};

/// Prints the one-line message, removes any temporary output, and unwinds to fam_run_main(),
/// which returns `code`.
[[noreturn]] void die(const std::string& arg, const std::string& reason, int code) {
  remove_temps();
  std::fprintf(stderr, "fam-run: %s%s%s\n", printable(arg).c_str(), arg.empty() ? "" : ": ",
               printable(reason).c_str());
  throw exit_request{code};
}

// ---- temporary outputs, removed on failure and on SIGINT/SIGTERM/SIGHUP --------------------

constexpr int kMaxTemps = 2;
constexpr std::size_t kMaxPath = 4096;
char g_temp_paths[kMaxTemps][kMaxPath];
volatile std::sig_atomic_t g_temp_live[kMaxTemps] = {0, 0};
std::FILE* g_temp_files[kMaxTemps] = {nullptr, nullptr};  // still open (closed on failure)

void remove_temps() {
  for (int i = 0; i < kMaxTemps; ++i) {
    if (g_temp_files[i] != nullptr) {
      std::fclose(g_temp_files[i]);
      g_temp_files[i] = nullptr;
    }
    if (g_temp_live[i]) {
      unlink(g_temp_paths[i]);
      g_temp_live[i] = 0;
    }
  }
}

extern "C" void on_signal(int sig) {
  for (int i = 0; i < kMaxTemps; ++i)
    if (g_temp_live[i]) unlink(g_temp_paths[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

/// A temporary file in the directory of `target`, to be renamed onto it.
struct temp_output {
  std::string arg, target, path;
  std::FILE* file = nullptr;
  int slot = -1;
};

/// Creates the temporary file for `target` (mode as a new file would get), or reports `arg`.
temp_output open_temp(const std::string& arg, const std::string& target, int slot) {
  temp_output t{arg, target, {}, nullptr, slot};
  const std::size_t cut = target.find_last_of('/');
  const std::string dir = cut == std::string::npos ? "" : target.substr(0, cut + 1);
  const std::string base = cut == std::string::npos ? target : target.substr(cut + 1);
  if (base.empty() || base == "." || base == "..")
    die(arg, "'" + target + "' is not a file name", kExitBadInput);
  struct stat st {};
  if (stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    die(arg, "'" + target + "' is a directory", kExitBadInput);
  std::string templ = dir + "." + base + ".tmp.XXXXXX";
  if (templ.size() >= kMaxPath) die(arg, "path too long", kExitBadInput);
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  // block the signals while the slot is filled, so the handler never sees half a path
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  const int fd = mkstemp(buf.data());
  const int e = errno;
  if (fd >= 0) {
    std::memcpy(g_temp_paths[slot], buf.data(), buf.size());
    g_temp_live[slot] = 1;
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  if (fd < 0) {
    die(arg,
        "cannot create a file in '" + (dir.empty() ? std::string(".") : dir) +
            "': " + std::strerror(e),
        kExitBadInput);
  }
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  t.path = buf.data();
  t.file = fdopen(fd, "wb");
  if (t.file == nullptr) {
    close(fd);
    die(arg, std::string("cannot open the temporary file: ") + std::strerror(errno), kExitFailure);
  }
  g_temp_files[slot] = t.file;
  return t;
}

/// Writes the array into the temporary file and closes it (flushed to disk).
void write_temp(temp_output& t, const std::vector<std::int64_t>& shape, const float* data) {
  std::string err;
  bool ok = npy::write(t.file, shape, data, err);
  if (ok && std::fflush(t.file) != 0) ok = false, err = std::strerror(errno);
  if (ok && fsync(fileno(t.file)) != 0) ok = false, err = std::strerror(errno);
  g_temp_files[t.slot] = nullptr;
  if (std::fclose(t.file) != 0 && ok) ok = false, err = std::strerror(errno);
  t.file = nullptr;
  if (!ok) {
    die(t.arg, "cannot write '" + t.target + "': " + err, kExitFailure);
  }
}

// ---- command line -----------------------------------------------------------------------

struct options {
  std::string variant, q, k, v, out, fam_init, fam_out, window, block, memory, scale;
};

struct option_slot {
  const char* name;
  std::string options::*field;
};

const option_slot kOptions[] = {
    {"--variant", &options::variant},
    {"--q", &options::q},
    {"--k", &options::k},
    {"--v", &options::v},
    {"--out", &options::out},
    {"--window", &options::window},
    {"--block", &options::block},
    {"--memory", &options::memory},
    {"--scale", &options::scale},
    {"--fam-init", &options::fam_init},
    {"--fam-out", &options::fam_out},
};

options parse_command_line(int argc, char** argv) {
  options o;
  std::vector<std::string> seen;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      throw exit_request{0};
    }
    if (a.rfind("--", 0) != 0) die(a, "unexpected argument (see --help)", kExitBadInput);
    std::string name = a, value;
    bool has_value = false;
    const std::size_t eq = a.find('=');
    if (eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    const option_slot* slot = nullptr;
    for (const option_slot& s : kOptions)
      if (name == s.name) slot = &s;
    if (slot == nullptr) die(name, "unknown option (see --help)", kExitBadInput);
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      die(name, "given more than once", kExitBadInput);
    seen.push_back(name);
    if (!has_value) {
      if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0)
        die(name, "missing value", kExitBadInput);
      value = argv[++i];
    }
    if (value.empty()) die(name, "empty value", kExitBadInput);
    o.*(slot->field) = value;
  }
  return o;
}

/// A decimal integer (optional sign), the whole string, in range.
index_t parse_integer(const std::string& arg, const std::string& s) {
  if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-' || s[0] == '+'))
    die(arg, "'" + s + "' is not an integer", kExitBadInput);
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '\0') die(arg, "'" + s + "' is not an integer", kExitBadInput);
  if (errno == ERANGE) die(arg, "'" + s + "' is out of range", kExitBadInput);
  return static_cast<index_t>(v);
}

/// A finite decimal or hexadecimal floating-point number, the whole string.
double parse_real(const std::string& arg, const std::string& s) {
  const unsigned char c0 = static_cast<unsigned char>(s.empty() ? ' ' : s[0]);
  if (!(std::isdigit(c0) || c0 == '-' || c0 == '+' || c0 == '.'))
    die(arg, "'" + s + "' is not a number", kExitBadInput);
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') die(arg, "'" + s + "' is not a number", kExitBadInput);
  if (!std::isfinite(v) || errno == ERANGE)
    die(arg, "'" + s + "' is not a finite number", kExitBadInput);
  return v;
}

// ---- inputs -----------------------------------------------------------------------------

npy::array load(const std::string& arg, const std::string& path, std::size_t rank,
                const char* layout) {
  npy::array a;
  std::string err;
  if (!npy::read(path, a, err)) die(arg, "'" + path + "': " + err, kExitBadInput);
  if (a.shape.size() != rank)
    die(arg,
        "expected a " + std::to_string(rank) + "-d array " + layout + ", got shape " +
            a.shape_text(),
        kExitBadInput);
  for (std::size_t i = 0; i < a.data.size(); ++i)
    if (!std::isfinite(a.data[i])) {
      std::string where;  // the multi-index of flat index i
      std::size_t rest = i;
      for (std::size_t d = a.shape.size(); d-- > 0;) {
        const std::size_t n = static_cast<std::size_t>(a.shape[d]);
        where = std::to_string(rest % n) + (where.empty() ? "" : ", ") + where;
        rest /= n;
      }
      die(arg, "element (" + where + ") is not finite", kExitBadInput);
    }
  return a;
}

fam::tensor_view<const float> view_of(const npy::array& a) {
  return fam::make_view<const float>(a.data.data(), a.dim(0), a.dim(1), a.dim(2));
}

/// The argument that a support_reason points at.
const char* argument_of(fam::support_reason r) {
  switch (r) {
    case fam::support_reason::invalid_block_size:
      return "--block";
    case fam::support_reason::invalid_mem_segments:
      return "--memory";
    case fam::support_reason::invalid_fam_len:
      return "--fam-init";
    case fam::support_reason::heads_not_divisible:
      return "--k";
    case fam::support_reason::invalid_scale:
      return "--scale";
    default:
      return "--q";
  }
}

/// Reports every reason `cfg` cannot run, naming the argument of the first.
void require_supported(const fam::dynamic_config& cfg) {
  const fam::support_report rep = fam::supports(cfg);
  if (rep.ok()) return;
  const char* arg = "--q";
  for (fam::support_reason r : fam::all_support_reasons)
    if (rep.has(r)) {
      arg = argument_of(r);
      break;
    }
  die(arg, "configuration not supported by the reference backend: " + fam::to_string(rep),
      kExitBadInput);
}

[[noreturn]] void library_failure(const char* what, fam::status s) {
  die("", std::string(what) + " failed: " + fam::to_string(s), kExitFailure);
}

int run(int argc, char** argv) {
  if (argc <= 1) die("", "no arguments (see --help)", kExitBadInput);
  const options o = parse_command_line(argc, argv);

  // the variant and which options it needs
  if (o.variant.empty()) die("--variant", "missing (full, swa, bswa or fam)", kExitBadInput);
  const std::string& var = o.variant;
  if (var != "full" && var != "swa" && var != "bswa" && var != "fam")
    die("--variant", "unknown variant '" + var + "' (full, swa, bswa or fam)", kExitBadInput);
  struct need {
    const char* name;
    const std::string& value;
    bool used;
  };
  const bool is_fam = var == "fam", blocked = var == "bswa" || is_fam;
  const need needs[] = {
      {"--q", o.q, true},
      {"--k", o.k, true},
      {"--v", o.v, true},
      {"--out", o.out, true},
      {"--window", o.window, var == "swa"},
      {"--block", o.block, blocked},
      {"--memory", o.memory, blocked},
      {"--fam-init", o.fam_init, is_fam},
  };
  for (const need& n : needs) {
    if (n.used && n.value.empty())
      die(n.name, "missing (needed by --variant " + var + ")", kExitBadInput);
    if (!n.used && !n.value.empty()) die(n.name, "not used by --variant " + var, kExitBadInput);
  }
  if (!is_fam && !o.fam_out.empty())
    die("--fam-out", "only --variant fam writes a state", kExitBadInput);
  if (!o.fam_out.empty() && o.fam_out == o.out)
    die("--fam-out", "same path as --out", kExitBadInput);

  // numbers
  index_t window = 0, block = 1, memory = 0;
  if (var == "swa") {
    window = parse_integer("--window", o.window);
    if (window < 1) die("--window", "must be >= 1, got " + o.window, kExitBadInput);
  }
  if (blocked) {
    block = parse_integer("--block", o.block);
    if (block < 1) die("--block", "must be >= 1, got " + o.block, kExitBadInput);
    memory = parse_integer("--memory", o.memory);
    if (memory < 0) die("--memory", "must be >= 0, got " + o.memory, kExitBadInput);
  }
  double scale = 0.0;
  const bool has_scale = !o.scale.empty();
  if (has_scale) {
    scale = parse_real("--scale", o.scale);
    if (!(scale > 0.0)) die("--scale", "must be > 0, got " + o.scale, kExitBadInput);
  }

  // inputs and their shapes
  npy::array q, k, v, p;
  try {
    q = load("--q", o.q, 3, "[L, H, D]");
    k = load("--k", o.k, 3, "[L, Hkv, D]");
    v = load("--v", o.v, 3, "[L, Hkv, D]");
    if (is_fam) p = load("--fam-init", o.fam_init, 3, "[H, F, D]");
  } catch (const std::bad_alloc&) {
    die("", "out of memory while reading the inputs", kExitFailure);
  }
  const index_t L = q.dim(0), H = q.dim(1), D = q.dim(2), Hkv = k.dim(1);
  if (H < 1) die("--q", "H (dimension 1) must be >= 1, got shape " + q.shape_text(), kExitBadInput);
  if (D < 1) die("--q", "D (dimension 2) must be >= 1, got shape " + q.shape_text(), kExitBadInput);
  const std::string qs = " (--q has shape " + q.shape_text() + ")";
  if (k.dim(0) != L)
    die("--k", "length " + std::to_string(k.dim(0)) + " != L = " + std::to_string(L) + qs,
        kExitBadInput);
  if (k.dim(2) != D)
    die("--k", "head dim " + std::to_string(k.dim(2)) + " != D = " + std::to_string(D) + qs,
        kExitBadInput);
  if (Hkv < 1)
    die("--k", "Hkv (dimension 1) must be >= 1, got shape " + k.shape_text(), kExitBadInput);
  if (v.dim(0) != L)
    die("--v", "length " + std::to_string(v.dim(0)) + " != L = " + std::to_string(L) + qs,
        kExitBadInput);
  if (v.dim(1) != Hkv)
    die("--v",
        "kv heads " + std::to_string(v.dim(1)) + " != Hkv = " + std::to_string(Hkv) + " of --k",
        kExitBadInput);
  if (v.dim(2) != D)
    die("--v", "head dim " + std::to_string(v.dim(2)) + " != D = " + std::to_string(D) + qs,
        kExitBadInput);
  if (H % Hkv != 0)
    die("--k", "H = " + std::to_string(H) + " is not a multiple of Hkv = " + std::to_string(Hkv),
        kExitBadInput);
  index_t F = 0;
  if (is_fam) {
    if (Hkv != H)
      die("--k",
          "--variant fam needs Hkv == H (got Hkv = " + std::to_string(Hkv) +
              ", H = " + std::to_string(H) + ")",
          kExitBadInput);
    F = p.dim(1);
    if (p.dim(0) != H)
      die("--fam-init",
          "heads " + std::to_string(p.dim(0)) + " != H = " + std::to_string(H) +
              " (shape [H, F, D])",
          kExitBadInput);
    if (p.dim(2) != D)
      die("--fam-init",
          "head dim " + std::to_string(p.dim(2)) + " != D = " + std::to_string(D) +
              " (shape [H, F, D])",
          kExitBadInput);
  }

  if (D > fam::reference_backend::max_head_dim)
    die("--q",
        "head dim D = " + std::to_string(D) + " exceeds the reference backend's maximum " +
            std::to_string(fam::reference_backend::max_head_dim),
        kExitBadInput);

  // The configuration. Only the FAM loop keeps a ring: there B and M are clamped to what the
  // sequence can use, which changes nothing (a block t < nblocks reads min(M, t) memory blocks;
  // no block completes when B > L either way) but keeps the ring within about 2L rows.
  index_t cfg_b = 1, cfg_m = 0;
  if (is_fam) {
    cfg_b = std::min(block, L + 1);
    const index_t nblocks = (L + cfg_b - 1) / cfg_b;
    cfg_m = std::min(memory, std::max<index_t>(nblocks - 1, 0));
  }
  fam::dynamic_config cfg(D, cfg_b, cfg_m, F);
  cfg.set_heads(H, Hkv);
  if (has_scale) cfg.set_scale(scale);
  require_supported(cfg);

  // outputs: temporaries first, so that a path problem is reported before the work
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_signal);
  temp_output out_file = open_temp("--out", o.out, 0);
  temp_output state_file;
  if (!o.fam_out.empty()) state_file = open_temp("--fam-out", o.fam_out, 1);

  std::vector<float> out, phi;
  try {
    out.assign(static_cast<std::size_t>(L * H * D), 0.0f);
    if (is_fam) phi = p.data;  // [H, F, D]
  } catch (const std::bad_alloc&) {
    die("", "out of memory for the output", kExitFailure);
  }
  const auto Q = view_of(q), K = view_of(k), V = view_of(v);
  const auto O = fam::make_view(out.data(), L, H, D);

  if (!is_fam) {
    const fam::mask_spec mask = var == "full"  ? fam::mask_spec::full()
                                : var == "swa" ? fam::mask_spec::sliding_window(window)
                                               : fam::mask_spec::bswa(block, memory);
    const fam::status s = fam::attention(cfg, mask, Q, K, V, O);
    if (s != fam::status::ok) library_failure("fam::attention", s);
  } else {
    fam::layer_state<fam::dynamic_config> layer;
    fam::status s = layer.init(cfg);
    if (s != fam::status::ok) library_failure("layer_state::init", s);
    // Φ is [H, F, D] head-major: a strided view, Qf = Kf = Vf = Φ
    const fam::tensor_view<const float> phi_view{phi.data(), F, H, D, D, F * D};
    s = fam::begin_fam(layer, phi_view, phi_view, phi_view);
    if (s != fam::status::ok) library_failure("fam::begin_fam", s);
    for (index_t done = 0; done < L;) {
      index_t n = 0;
      s = fam::attend(layer, Q.rows_from(done, L - done), K.rows_from(done, L - done),
                      V.rows_from(done, L - done), O.rows_from(done, L - done), {}, &n);
      if (s != fam::status::ok) library_failure("fam::attend", s);
      done += n;
      if (layer.phase() == fam::fam_phase::pending) {  // a complete block: Φ[t] = Uf
        const fam::tensor_view<const float> uf = layer.fam_output();
        for (index_t h = 0; h < H; ++h)
          for (index_t r = 0; r < F; ++r)
            std::memcpy(phi.data() + (h * F + r) * D, uf.at(r, h), sizeof(float) * D);
        s = fam::update_fam(layer, phi_view, phi_view, phi_view);
        if (s != fam::status::ok) library_failure("fam::update_fam", s);
      }
    }
  }

  // write both, then rename both (the state first, so --out appears last)
  write_temp(out_file, {L, H, D}, out.data());
  if (!o.fam_out.empty()) write_temp(state_file, {H, F, D}, phi.data());
  if (!o.fam_out.empty()) {
    if (std::rename(state_file.path.c_str(), o.fam_out.c_str()) != 0) {
      const int e = errno;
      die("--fam-out", "cannot rename onto '" + o.fam_out + "': " + std::strerror(e), kExitFailure);
    }
    g_temp_live[1] = 0;
  }
  if (std::rename(out_file.path.c_str(), o.out.c_str()) != 0) {
    const int e = errno;
    if (!o.fam_out.empty()) unlink(o.fam_out.c_str());
    die("--out", "cannot rename onto '" + o.out + "': " + std::strerror(e), kExitFailure);
  }
  g_temp_live[0] = 0;
  return 0;
}

}  // namespace

/// The whole program: its exit status (0, 1 or 2, as --help says).
int fam_run_main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const exit_request& e) {
    return e.code;
  }
}

#ifndef FAM_RUN_NO_MAIN
int main(int argc, char** argv) { return fam_run_main(argc, argv); }
#endif
