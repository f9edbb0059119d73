// fuzz_fam_run: the fam-run command-line tool, in-process (fam_run_main of
// examples/fam_run/fam_run.cpp), on .npy files and argument vectors drawn from the bytes.
//
// The first byte picks the program:
//   0  npy::read on the raw bytes: it either fails with a one-line reason, or returns an array
//      whose element count is its shape's, which npy::write writes back and npy::read reads
//      again bitwise;
//   1  a command line: a well-formed one (variant, inputs, numbers) with up to a few edits
//      (options dropped, repeated, renamed, valued with odd strings, --opt=value forms,
//      positional words, --help), over .npy inputs that are valid (float32 or float64, format
//      1.0, 2.0 or 3.0) or edited or raw bytes.
// Every run must follow fam-run's contract (fam-run --help): exit status 0, 1 or 2; on failure
// exactly one line "fam-run: ..." on stderr, nothing on stdout, and no file created or changed;
// on success nothing on stderr, no temporary left, and only the outputs written: a float32
// [L, H, D] array that matches the float64 oracle when the command was not edited.
//
// Every path fam-run sees lies in a sandbox directory made at start (removed at exit): the
// harness pairs options with values exactly as fam-run does and replaces any value of a path
// option that is not one of the sandbox's paths, so a run can never write elsewhere.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "fuzz_support.hpp"  // first: FAM_ASSERT
#include "npy_bytes.hpp"

#define FAM_RUN_NO_MAIN
#include "fam_run.cpp"  // examples/fam_run: the program, without its main()
#include "support/oracle.hpp"

namespace {

using fam::index_t;

std::string g_box;      // the sandbox: every path fam-run may touch
std::string g_capture;  // stdout and stderr of a run

void remove_tree(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = opendir(path.c_str())) {
      std::vector<std::string> names;
      while (const dirent* e = readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          names.push_back(e->d_name);
      closedir(d);
      for (const std::string& n : names) remove_tree(path + "/" + n);
    }
    rmdir(path.c_str());
  } else {
    unlink(path.c_str());
  }
}

void cleanup() {
  if (!g_box.empty()) remove_tree(g_box);
  if (!g_capture.empty()) remove_tree(g_capture);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_CHECK(f != nullptr, "cannot write %s", path.c_str());
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}
std::string read_file(const std::string& path) {
  std::string s;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

/// Every file under `dir` with its contents (directories as "<dir>").
void snapshot(const std::string& dir, std::map<std::string, std::string>& out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (const dirent* e = readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
      names.push_back(e->d_name);
  closedir(d);
  for (const std::string& n : names) {
    const std::string p = dir + "/" + n;
    struct stat st {};
    lstat(p.c_str(), &st);
    if (S_ISDIR(st.st_mode)) {
      out[p] = "<dir>";
      snapshot(p, out);
    } else {
      out[p] = read_file(p);
    }
  }
}

/// One input array as the harness meant it (shape and values), and the file's bytes.
struct npy_input {
  std::vector<std::int64_t> shape;
  std::vector<float> data;
  bool intact = true;  // the bytes are exactly npy_bytes(shape, data)
  std::string bytes;
};

npy_input make_input(fuzz::bytes_in& in, fuzz::prng& rng, std::vector<std::int64_t> shape) {
  npy_input x;
  const std::uint8_t kind = in.byte();
  // sometimes a dimension off by one, or a rank off by one
  if (kind % 11 == 1 && !shape.empty()) shape[in.byte() % shape.size()] += 1;
  if (kind % 11 == 2) shape.push_back(1);
  if (kind % 11 == 3 && !shape.empty()) shape.pop_back();
  std::size_t count = 1;
  for (std::int64_t d : shape) count *= static_cast<std::size_t>(d);
  x.shape = shape;
  x.data.resize(count);
  for (float& f : x.data) f = float(rng.unit() * 2.0);
  if (kind % 13 == 4 && !x.data.empty())
    x.data[in.byte() % x.data.size()] = fuzz::special_value(in.byte());
  const bool f8 = (kind & 0x10) != 0;
  const int version = 1 + (kind >> 5) % 3;
  x.bytes = fuzz::npy_bytes(shape, x.data, f8, version);
  if (kind % 7 == 5) {  // edited bytes
    x.intact = false;
    const index_t edits = in.range(1, 4);
    for (index_t e = 0; e < edits && !x.bytes.empty(); ++e) {
      const std::uint8_t op = in.byte();
      const std::size_t at = in.u64(2) % x.bytes.size();
      if (op % 3 == 0) x.bytes[at] = char(in.byte());
      if (op % 3 == 1) x.bytes.resize(at);
      if (op % 3 == 2) x.bytes.insert(at, 1, char(in.byte()));
    }
  } else if (kind % 7 == 6) {  // raw bytes
    x.intact = false;
    const std::size_t n = in.range(0, 80);
    x.bytes.clear();
    for (std::size_t i = 0; i < n; ++i) x.bytes += char(in.byte());
  }
  return x;
}

// ---- running fam-run in-process ---------------------------------------------------------------

struct run_result {
  int code;
  std::string out, err;
};

run_result run_fam_run(const std::vector<std::string>& args) {
  std::vector<std::string> store = args;
  std::vector<char*> argv;
  static char name[] = "fam-run";
  argv.push_back(name);
  for (std::string& a : store) argv.push_back(&a[0]);
  argv.push_back(nullptr);

  struct sigaction saved[3];
  const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) sigaction(sigs[i], nullptr, &saved[i]);
  std::fflush(stdout);
  std::fflush(stderr);
  const int keep_out = dup(1), keep_err = dup(2);
  const std::string out_path = g_capture + "/out", err_path = g_capture + "/err";
  const int fo = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int fe = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fo, 1);
  dup2(fe, 2);
  close(fo);
  close(fe);
  const int code = fam_run_main(static_cast<int>(argv.size() - 1), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  dup2(keep_out, 1);
  dup2(keep_err, 2);
  close(keep_out);
  close(keep_err);
  for (int i = 0; i < 3; ++i) sigaction(sigs[i], &saved[i], nullptr);
  return {code, read_file(out_path), read_file(err_path)};
}

// ---- program 0: the reader on raw bytes --------------------------------------------------------

void program_reader(fuzz::bytes_in& in) {
  std::size_t n = 0;
  const std::uint8_t* p = in.rest(&n);
  const std::string path = g_box + "/raw.npy";
  write_file(path, std::string(reinterpret_cast<const char*>(p), n));
  npy::array a;
  std::string err;
  if (!npy::read(path, a, err)) {
    FUZZ_CHECK(!err.empty() && err.find('\n') == std::string::npos,
               "npy::read failed without a one-line reason: '%s'", err.c_str());
    return;
  }
  std::uint64_t count = 1;
  for (std::int64_t d : a.shape) {
    FUZZ_CHECK(d >= 0, "npy::read returned a negative dimension");
    count *= static_cast<std::uint64_t>(d);
  }
  FUZZ_CHECK(count == a.data.size(), "npy::read: %zu elements for shape %s", a.data.size(),
             a.shape_text().c_str());
  FUZZ_CHECK(a.descr == "<f4" || a.descr == "<f8", "npy::read: descr '%s'", a.descr.c_str());
  // write it back and read it again
  const std::string again = g_box + "/again.npy";
  std::FILE* f = std::fopen(again.c_str(), "wb");
  FUZZ_CHECK(f != nullptr, "open %s", again.c_str());
  std::string werr;
  const bool wrote = npy::write(f, a.shape, a.data.data(), werr);
  std::fclose(f);
  FUZZ_CHECK(wrote, "npy::write: %s", werr.c_str());
  npy::array b;
  FUZZ_CHECK(npy::read(again, b, err), "npy::read of npy::write's file: %s", err.c_str());
  FUZZ_CHECK(
      b.shape == a.shape && b.data.size() == a.data.size() &&
          (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * 4) == 0),
      "npy write/read round trip differs");
}

// ---- program 1: command lines ----------------------------------------------------------------

const char* const kOptionNames[] = {
    "--variant", "--q",        "--k",       "--v",     "--out",  "--window", "--block", "--memory",
    "--scale",   "--fam-init", "--fam-out", "--bogus", "--help", "-h",       "--Q",     "--"};
bool is_path_option(const std::string& name) {
  return name == "--q" || name == "--k" || name == "--v" || name == "--out" ||
         name == "--fam-init" || name == "--fam-out";
}
const char* const kNumbers[] = {"0",
                                "1",
                                "2",
                                "3",
                                "5",
                                "-1",
                                "+2",
                                "64",
                                "1e3",
                                "2.5",
                                "nan",
                                "inf",
                                "-inf",
                                "0x10",
                                "007",
                                "4x",
                                " 4",
                                "99999999999999999999",
                                "0.5",
                                "1e-300",
                                "1e308",
                                "1e999",
                                "-0",
                                ".5",
                                "seven",
                                "1000000",
                                "9223372036854775807",
                                "-9223372036854775808",
                                "0x1p-3"};
const char* const kVariants[] = {"full", "swa", "bswa", "fam", "FULL", "local", ""};

/// One (option, value) pair of a command line and how it is written.
struct arg_pair {
  std::string name, value;
  int form = 0;  // 0 "name value", 1 "name=value", 2 "name" alone, 3 "value" alone
};

/// The paths a path option may name: all in the sandbox.
std::string sandbox_path(std::uint8_t code) {
  static const char* const names[] = {
      "q.npy", "k.npy", "v.npy",      "p.npy",       "r.npy", "o.npy", "o2.npy",  "missing.npy",
      "adir",  "adir/", "adir/o.npy", "nodir/o.npy", ".",     "..",    "adir/..", "o.npy/x"};
  if (code % 17 == 16) return g_box + "/" + std::string(300, 'a') + "/" + std::string(300, 'b');
  return g_box + "/" + names[code % 16];
}
bool in_sandbox(const std::string& v) {
  return v.size() > g_box.size() && v.compare(0, g_box.size() + 1, g_box + "/") == 0 &&
         v.find("/../") == std::string::npos && v.compare(v.size() - 3, 3, "/..") != 0;
}

/// The argument vector, with every value that fam-run would give a path option (pairing
/// options with values as fam-run does) made a sandbox path.
std::vector<std::string> render(std::vector<arg_pair>& pairs) {
  std::vector<std::string> args;
  for (const arg_pair& p : pairs) {
    switch (p.form) {
      case 1:
        args.push_back(p.name + "=" + p.value);
        break;
      case 2:
        args.push_back(p.name);
        break;
      case 3:
        args.push_back(p.value);
        break;
      default:
        args.push_back(p.name);
        args.push_back(p.value);
    }
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) continue;
    const std::size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    if (eq != std::string::npos) {
      if (is_path_option(name) && !in_sandbox(a.substr(eq + 1)))
        args[i] = name + "=" + g_box + "/o.npy";
      continue;
    }
    if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      if (is_path_option(name) && !in_sandbox(args[i + 1])) args[i + 1] = g_box + "/o.npy";
      ++i;
    }
  }
  return args;
}

void program_command(fuzz::bytes_in& in) {
  fuzz::prng rng(in.u64());
  // shapes
  const index_t L = in.range(0, 12), H = in.range(1, 4), D = in.range(1, 6), F = in.range(0, 3);
  index_t Hkv = H;
  const std::uint8_t hk = in.byte();
  if (hk & 1) Hkv = (H % 2 == 0 && (hk & 2)) ? H / 2 : 1;
  const int variant = in.byte() % 4;  // full, swa, bswa, fam
  if (variant == 3) Hkv = H;
  const std::uint8_t nums = in.byte();
  const index_t window = 1 + nums % 7, block = 1 + (nums >> 3) % 5, memory = (nums >> 5) % 4;
  const bool with_scale = (hk & 4) != 0, with_fam_out = (hk & 8) != 0;

  // the inputs
  npy_input q = make_input(in, rng, {L, H, D}), k = make_input(in, rng, {L, Hkv, D}),
            v = make_input(in, rng, {L, Hkv, D}), p = make_input(in, rng, {H, F, D}),
            r = make_input(in, rng, {L, H, D});
  remove_tree(g_box);
  mkdir(g_box.c_str(), 0700);
  mkdir((g_box + "/adir").c_str(), 0700);
  write_file(g_box + "/q.npy", q.bytes);
  write_file(g_box + "/k.npy", k.bytes);
  write_file(g_box + "/v.npy", v.bytes);
  write_file(g_box + "/p.npy", p.bytes);
  write_file(g_box + "/r.npy", r.bytes);
  if (hk & 16) write_file(g_box + "/o.npy", "previous output");

  // the well-formed command
  std::vector<arg_pair> pairs = {{"--variant", kVariants[variant]},
                                 {"--q", g_box + "/q.npy"},
                                 {"--k", g_box + "/k.npy"},
                                 {"--v", g_box + "/v.npy"},
                                 {"--out", g_box + "/o.npy"}};
  if (variant == 1) pairs.push_back({"--window", std::to_string(window)});
  if (variant >= 2) {
    pairs.push_back({"--block", std::to_string(block)});
    pairs.push_back({"--memory", std::to_string(memory)});
  }
  if (variant == 3) pairs.push_back({"--fam-init", g_box + "/p.npy"});
  if (variant == 3 && with_fam_out) pairs.push_back({"--fam-out", g_box + "/o2.npy"});
  if (with_scale) pairs.push_back({"--scale", "0.5"});
  // edits
  const index_t edits = in.range(0, 4) == 0 ? in.range(1, 4) : 0;
  for (index_t e = 0; e < edits; ++e) {
    const std::uint8_t op = in.byte();
    const std::size_t at = pairs.empty() ? 0 : in.byte() % pairs.size();
    switch (op % 8) {
      case 0:
        if (!pairs.empty()) pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(at));
        break;
      case 1:
        if (!pairs.empty()) pairs.push_back(pairs[at]);
        break;
      case 2: {  // another option name
        const std::string name = kOptionNames[in.byte() % 16];
        arg_pair np{name, is_path_option(name) ? sandbox_path(in.byte()) : kNumbers[in.byte() % 29],
                    0};
        pairs.insert(pairs.begin() + static_cast<std::ptrdiff_t>(at), np);
        break;
      }
      case 3:  // another value
        if (!pairs.empty())
          pairs[at].value = is_path_option(pairs[at].name)  ? sandbox_path(in.byte())
                            : pairs[at].name == "--variant" ? kVariants[in.byte() % 7]
                                                            : kNumbers[in.byte() % 29];
        break;
      case 4:
        if (!pairs.empty()) pairs[at].form = in.byte() % 4;
        break;
      case 5: {  // a value made of the fuzzer's bytes (numeric options only)
        std::string s;
        const index_t n = in.range(0, 12);
        for (index_t i = 0; i < n; ++i) s += char(in.byte());
        s.erase(std::remove(s.begin(), s.end(), '\0'), s.end());
        pairs.push_back({kOptionNames[5 + in.byte() % 4], s, int(in.byte() % 2)});
        break;
      }
      case 6:
        pairs.push_back({"", "stray", 3});
        break;
      default:
        std::swap(pairs[at], pairs[pairs.size() - 1]);
    }
  }
  std::vector<std::string> args = render(pairs);

  std::map<std::string, std::string> before, after;
  snapshot(g_box, before);
  const run_result rr = run_fam_run(args);
  snapshot(g_box, after);
  std::string cmd;
  for (const std::string& a : args) cmd += " '" + a + "'";

  FUZZ_CHECK(rr.code == 0 || rr.code == 1 || rr.code == 2, "exit status %d for%s", rr.code,
             cmd.c_str());
  if (rr.code != 0) {
    FUZZ_CHECK(rr.err.rfind("fam-run: ", 0) == 0 && rr.err.size() > 10 &&
                   rr.err.find('\n') == rr.err.size() - 1,
               "a failed run must print one line 'fam-run: ...', got '%s' for%s", rr.err.c_str(),
               cmd.c_str());
    FUZZ_CHECK(rr.out.empty(), "a failed run wrote to stdout for%s", cmd.c_str());
    FUZZ_CHECK(before == after, "a failed run (%s) created or changed files for%s", rr.err.c_str(),
               cmd.c_str());
    FUZZ_CHECK(rr.code == 2 || rr.err.find("cannot") != std::string::npos,
               "exit status 1 is for write failures: '%s'", rr.err.c_str());
    return;
  }
  if (!rr.out.empty()) {  // --help
    FUZZ_CHECK(rr.out.rfind("usage: fam-run", 0) == 0 && rr.err.empty() && before == after,
               "--help: '%s'", rr.err.c_str());
    return;
  }
  FUZZ_CHECK(rr.err.empty(), "a successful run printed '%s'", rr.err.c_str());
  // what fam-run wrote: --out (and --fam-out); find them as fam-run pairs options
  std::string out_path, fam_out_path, variant_name;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const std::size_t eq = a.find('=');
    const std::string name = a.substr(0, eq);
    std::string value;
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    }
    if (name == "--out") out_path = value;
    if (name == "--fam-out") fam_out_path = value;
    if (name == "--variant") variant_name = value;
  }
  for (const auto& [path, bytes] : after) {
    if (path == out_path || path == fam_out_path) continue;
    FUZZ_CHECK(path.find(".tmp.") == std::string::npos, "temporary %s left behind", path.c_str());
    const auto was = before.find(path);
    FUZZ_CHECK(was != before.end() && was->second == bytes,
               "a successful run created or changed %s (not an output) for%s", path.c_str(),
               cmd.c_str());
  }
  npy::array o;
  std::string err;
  FUZZ_CHECK(npy::read(out_path, o, err), "the output %s does not read back: %s", out_path.c_str(),
             err.c_str());
  FUZZ_CHECK(o.descr == "<f4" && o.shape.size() == 3, "the output is not float32 [L, H, D]");

  // an unedited command over intact inputs: the float64 oracle (reference backend: tight)
  if (edits != 0 || !q.intact || !k.intact || !v.intact || (variant == 3 && !p.intact)) return;
  for (const npy_input* x : {&q, &k, &v, &p})  // moderate values only: huge logits tie-break
    for (float f : x->data)
      if (!(std::fabs(f) <= 4.0f)) return;
  if (q.shape != std::vector<std::int64_t>{L, H, D} ||
      k.shape != std::vector<std::int64_t>{L, Hkv, D} || v.shape != k.shape)
    return;
  FUZZ_CHECK((o.shape == std::vector<std::int64_t>{L, H, D}), "output shape %s",
             o.shape_text().c_str());
  const double scale = with_scale ? 0.5 : 1.0 / std::sqrt(double(D));
  const std::vector<double> dq(q.data.begin(), q.data.end()), dk(k.data.begin(), k.data.end()),
      dv(v.data.begin(), v.data.end());
  std::vector<double> want, want_phi;
  if (variant < 3) {
    const oracle::mask kind = variant == 0   ? oracle::mask::full
                              : variant == 1 ? oracle::mask::window
                                             : oracle::mask::bswa;
    want = oracle::token_attention(kind, window, block, memory, L, int(H), int(Hkv), int(D), scale,
                                   dq, dk, dv)
               .out;
  } else {
    if (p.shape != std::vector<std::int64_t>{H, F, D}) return;
    // fam-run's Φ is [H, F, D]; the oracle's [F, H, D]
    std::vector<double> phi0(static_cast<std::size_t>(F * H * D));
    for (index_t h = 0; h < H; ++h)
      for (index_t f = 0; f < F; ++f)
        for (index_t d = 0; d < D; ++d)
          phi0[static_cast<std::size_t>((f * H + h) * D + d)] =
              p.data[static_cast<std::size_t>((h * F + f) * D + d)];
    const oracle::fam_seq_result res =
        oracle::fam_weight_free(block, memory, F, L, int(H), int(D), scale, dq, dk, dv, phi0);
    want = res.out;
    for (index_t h = 0; h < H; ++h)
      for (index_t f = 0; f < F; ++f)
        for (index_t d = 0; d < D; ++d)
          want_phi.push_back(res.phi[static_cast<std::size_t>((f * H + h) * D + d)]);
  }
  double vmax = 0.0;
  for (double x : dv) vmax = std::max(vmax, std::fabs(x));
  for (double x : want_phi) vmax = std::max(vmax, std::fabs(x));
  const double tol = 1e-5 * (1.0 + vmax);
  for (std::size_t i = 0; i < want.size(); ++i)
    FUZZ_CHECK(std::fabs(double(o.data[i]) - want[i]) <= tol,
               "fam-run output %zu: %.9g, oracle %.9g for%s", i, double(o.data[i]), want[i],
               cmd.c_str());
  if (!fam_out_path.empty()) {
    npy::array ph;
    FUZZ_CHECK(npy::read(fam_out_path, ph, err), "--fam-out does not read back: %s", err.c_str());
    FUZZ_CHECK((ph.shape == std::vector<std::int64_t>{H, F, D}), "--fam-out shape %s",
               ph.shape_text().c_str());
    for (std::size_t i = 0; i < want_phi.size(); ++i)
      FUZZ_CHECK(std::fabs(double(ph.data[i]) - want_phi[i]) <= tol,
                 "fam-run state %zu: %.9g, oracle %.9g", i, double(ph.data[i]), want_phi[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = std::getenv("TMPDIR");
  struct stat st {};
  std::string base = tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
  if (tmp == nullptr && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)) base = "/dev/shm";
  std::string templ = base + "/fam_fuzz_run.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  FUZZ_CHECK(mkdtemp(buf.data()) != nullptr, "mkdtemp %s", templ.c_str());
  g_capture = buf.data();
  g_box = g_capture + "/box";
  mkdir(g_box.c_str(), 0700);
  std::atexit(cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::bytes_in in(data, size);
  if (in.byte() % 2 == 0) {
    program_reader(in);
  } else {
    program_command(in);
  }
  return 0;
}
