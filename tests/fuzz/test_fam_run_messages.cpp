// test_fam_run_messages.cpp: fam-run's bad inputs and the exact line each one prints, run
// in-process (fam_run_main of examples/fam_run/fam_run.cpp) in a scratch directory, without
// NumPy. Each row must exit 2 (1 for a failure to write), print exactly its message as the
// only line on stderr, nothing on stdout, and leave the directory as it was. The rows follow
// tests/fam_run/crosscheck.py's table (same descriptions); docs/bad-inputs.md lists them.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#define FAM_RUN_NO_MAIN
#include "fam_run.cpp"  // examples/fam_run
#include "fuzz/npy_bytes.hpp"

namespace {

std::string slurp(const std::string& path) {
  std::string s;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}
void spill(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}
std::map<std::string, std::string> listing(const std::string& dir) {
  std::map<std::string, std::string> m;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") m[n] = slurp(dir + "/" + n);
    }
    closedir(d);
  }
  return m;
}

struct outcome {
  int code;
  std::string out, err;
};

/// fam_run_main with `args`, in the current directory, stdout and stderr captured.
outcome run(const std::vector<std::string>& args, const std::string& capture) {
  std::vector<std::string> store = args;
  std::vector<char*> argv;
  static char name[] = "fam-run";
  argv.push_back(name);
  for (std::string& a : store) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const int keep_out = dup(1), keep_err = dup(2);
  const int fo = open((capture + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const int fe = open((capture + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fo, 1);
  dup2(fe, 2);
  close(fo);
  close(fe);
  struct sigaction saved[3];
  const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
  for (int i = 0; i < 3; ++i) sigaction(sigs[i], nullptr, &saved[i]);
  const int code = fam_run_main(static_cast<int>(argv.size() - 1), argv.data());
  for (int i = 0; i < 3; ++i) sigaction(sigs[i], &saved[i], nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  dup2(keep_out, 1);
  dup2(keep_err, 2);
  close(keep_out);
  close(keep_err);
  return {code, slurp(capture + "/out"), slurp(capture + "/err")};
}

std::vector<float> ramp(std::size_t n, float scale) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = scale * float(int(i % 13) - 6);
  return x;
}

using args_t = std::vector<std::string>;

args_t cmd(const std::string& variant = "full", const std::string& q = "q.npy",
           const std::string& k = "k.npy", const std::string& v = "v.npy",
           const std::string& out = "o.npy", const args_t& extra = {}) {
  args_t a;
  if (!variant.empty()) a.insert(a.end(), {"--variant", variant});
  if (!q.empty()) a.insert(a.end(), {"--q", q});
  if (!k.empty()) a.insert(a.end(), {"--k", k});
  if (!v.empty()) a.insert(a.end(), {"--v", v});
  if (!out.empty()) a.insert(a.end(), {"--out", out});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}
args_t fam_cmd(const args_t& extra, bool with_block = true, bool with_init = true) {
  args_t a = {"--variant", "fam",    "--q",   "qm.npy", "--k",      "km.npy",
              "--v",       "vm.npy", "--out", "o.npy",  "--memory", "1"};
  if (with_block) a.insert(a.end(), {"--block", "2"});
  if (with_init) a.insert(a.end(), {"--fam-init", "p.npy"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

struct row {
  const char* what;  // the row's description (as in crosscheck.py)
  args_t args;
  const char* message;  // the whole line fam-run prints, without the newline
  int code;
};

}  // namespace

TEST_SUITE("fam_run") {
  TEST_CASE("fam-run rejects each bad input with its one-line message and writes nothing") {
    char templ[] = "/tmp/fam_run_messages_XXXXXX";
    REQUIRE(mkdtemp(templ) != nullptr);
    const std::string dir = templ, capture = dir + "/.capture", work = dir + "/work";
    REQUIRE(mkdir(capture.c_str(), 0700) == 0);
    REQUIRE(mkdir(work.c_str(), 0700) == 0);
    char here[4096];
    REQUIRE(getcwd(here, sizeof here) != nullptr);
    REQUIRE(chdir(work.c_str()) == 0);

    const std::int64_t L = 6, H = 4, Hkv = 2, D = 8;
    using fuzz::npy_bytes;
    using fuzz::npy_raw;
    const std::string sh = "(6, 4, 8)",
                      qd(reinterpret_cast<const char*>(ramp(L * H * D, 0.1f).data()),
                         std::size_t(L * H * D * 4));
    auto f4 = [](std::vector<std::int64_t> s, float scale = 0.1f) {
      std::size_t n = 1;
      for (std::int64_t d : s) n *= std::size_t(d);
      return npy_bytes(s, ramp(n, scale), false, 1);
    };
    auto hdr = [&](const std::string& dict, const std::string& data) {
      return npy_raw(dict, data);
    };
    std::vector<float> nan_q = ramp(L * H * D, 0.1f), inf_v = ramp(L * Hkv * D, 0.1f);
    nan_q[(2 * H + 1) * D + 3] = std::numeric_limits<float>::quiet_NaN();
    inf_v[0] = std::numeric_limits<float>::infinity();
    const std::string big8 = [&] {  // float64 with 1e300 at (1, 1, 1)
      std::string b = npy_bytes({L, H, D}, ramp(L * H * D, 0.1f), true, 1);
      const double x = 1e300;
      std::memcpy(&b[b.size() - std::size_t(L * H * D * 8) + std::size_t((H + 1) * D + 1) * 8], &x,
                  8);
      return b;
    }();
    const std::map<std::string, std::string> files = {
        {"q.npy", f4({L, H, D})},
        {"k.npy", f4({L, Hkv, D})},
        {"v.npy", f4({L, Hkv, D})},
        {"qm.npy", f4({L, H, D})},
        {"km.npy", f4({L, H, D})},
        {"vm.npy", f4({L, H, D})},
        {"p.npy", f4({H, 2, D})},
        {"q2d.npy", f4({L, H * D})},
        {"k4d.npy", f4({L, Hkv, D, 1})},
        {"kshort.npy", f4({L - 1, Hkv, D})},
        {"vshort.npy", f4({L - 1, Hkv, D})},
        {"kd.npy", f4({L, Hkv, D + 1})},
        {"vd.npy", f4({L, Hkv, D - 1})},
        {"vh.npy", f4({L, Hkv + 2, D})},
        {"k3.npy", f4({L, 3, D})},
        {"v3.npy", f4({L, 3, D})},
        {"q0h.npy", f4({L, 0, D})},
        {"q0d.npy", f4({L, H, 0})},
        {"k0d.npy", f4({L, Hkv, 0})},
        {"v0d.npy", f4({L, Hkv, 0})},
        {"qbig.npy", f4({1, 1, 1025})},
        {"kbig.npy", f4({1, 1, 1025})},
        {"vbig.npy", f4({1, 1, 1025})},
        {"pH.npy", f4({H + 1, 2, D})},
        {"pD.npy", f4({H, 2, D + 1})},
        {"p2d.npy", f4({H, D})},
        {"qi4.npy", hdr("{'descr': '<i4', 'fortran_order': False, 'shape': " + sh + ", }", qd)},
        {"qf2.npy", hdr("{'descr': '<f2', 'fortran_order': False, 'shape': " + sh + ", }", qd)},
        {"qbe.npy", hdr("{'descr': '>f4', 'fortran_order': False, 'shape': " + sh + ", }", qd)},
        {"qfort.npy", hdr("{'descr': '<f4', 'fortran_order': True, 'shape': " + sh + ", }", qd)},
        {"empty.npy", ""},
        {"qnan.npy", npy_bytes({L, H, D}, nan_q, false, 1)},
        {"vinf.npy", npy_bytes({L, Hkv, D}, inf_v, false, 1)},
        {"qbig8.npy", big8},
        {"badmagic.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': " + sh + ", }",
                                 qd, 1, 0, "\x93NUMPZ")},
        {"notnpy.npy", "hello, this is not a numpy file at all\n"},
        {"short.npy", "\x93NUM"},
        {"v4.npy",
         npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': " + sh + ", }", qd, 4, 0)},
        {"v11.npy",
         npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': " + sh + ", }", qd, 1, 1)},
        {"hdrlen.npy",
         std::string("\x93NUMPY") + '\x01' + '\0' + '\xff' + '\x7f' + "{'descr': '<f4'"},
        {"notdict.npy", hdr("['<f4', False, " + sh + "]", qd)},
        {"nokey.npy", hdr("{'descr': '<f4', 'fortran_order': False}", qd)},
        {"extrakey.npy",
         hdr("{'descr': '<f4', 'fortran_order': False, 'shape': " + sh + ", 'x': 1}", qd)},
        {"dupkey.npy",
         hdr("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': " + sh + "}", qd)},
        {"negshape.npy", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (6, -4, 8)}", qd)},
        {"floatshape.npy",
         hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (6, 4.0, 8)}", qd)},
        {"listshape.npy", hdr("{'descr': '<f4', 'fortran_order': False, 'shape': 192}", qd)},
        {"hugeshape.npy",
         hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 4, 8)}",
             qd)},
        {"overflow.npy",
         hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 8)}", qd)},
        {"unterminated.npy",
         hdr("{'descr': '<f4, 'fortran_order': False, 'shape': " + sh + "}", qd)},
        {"fortranstr.npy", hdr("{'descr': '<f4', 'fortran_order': 'no', 'shape': " + sh + "}", qd)},
        {"structured.npy",
         hdr("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': " + sh + "}", qd)},
        {"trunc.npy", f4({L, H, D}).substr(0, f4({L, H, D}).size() - 3)},
        {"trailing.npy", f4({L, H, D}) + std::string(4, '\0')},
        {"hdrtrunc.npy", f4({L, H, D}).substr(0, 40)},
    };
    for (const auto& [name, bytes] : files) spill(name, bytes);
    REQUIRE(mkdir("adir.npy", 0700) == 0);

    const row rows[] = {
        {"no arguments", {}, "fam-run: no arguments (see --help)", 2},
        {"no variant", cmd(""), "fam-run: --variant: missing (full, swa, bswa or fam)", 2},
        {"unknown variant", cmd("local"),
         "fam-run: --variant: unknown variant 'local' (full, swa, bswa or fam)", 2},
        {"missing --q", cmd("full", ""), "fam-run: --q: missing (needed by --variant full)", 2},
        {"missing --out", cmd("full", "q.npy", "k.npy", "v.npy", ""),
         "fam-run: --out: missing (needed by --variant full)", 2},
        {"missing file", cmd("full", "nope.npy"),
         "fam-run: --q: 'nope.npy': cannot open: No such file or directory", 2},
        {"directory as input", cmd("full", "q.npy", "adir.npy"),
         "fam-run: --k: 'adir.npy': is a directory", 2},
        {"empty file", cmd("full", "q.npy", "k.npy", "empty.npy"),
         "fam-run: --v: 'empty.npy': not a .npy file (too short)", 2},
        {"Q rank 2", cmd("full", "q2d.npy"),
         "fam-run: --q: expected a 3-d array [L, H, D], got shape (6, 32)", 2},
        {"K rank 4", cmd("full", "q.npy", "k4d.npy"),
         "fam-run: --k: expected a 3-d array [L, Hkv, D], got shape (6, 2, 8, 1)", 2},
        {"int32 dtype", cmd("full", "qi4.npy"),
         "fam-run: --q: 'qi4.npy': unsupported dtype '<i4'; need '<f4' (float32) or '<f8' "
         "(float64)",
         2},
        {"float16 dtype", cmd("full", "qf2.npy"),
         "fam-run: --q: 'qf2.npy': unsupported dtype '<f2'; need '<f4' (float32) or '<f8' "
         "(float64)",
         2},
        {"big-endian f4", cmd("full", "qbe.npy"),
         "fam-run: --q: 'qbe.npy': big-endian dtype '>f4' is not supported; need '<f4' or '<f8'",
         2},
        {"fortran order", cmd("full", "qfort.npy"),
         "fam-run: --q: 'qfort.npy': fortran_order True is not supported; write the array in C "
         "order",
         2},
        {"bad magic", cmd("full", "badmagic.npy"),
         "fam-run: --q: 'badmagic.npy': not a .npy file (bad magic)", 2},
        {"not npy", cmd("full", "q.npy", "notnpy.npy"),
         "fam-run: --k: 'notnpy.npy': not a .npy file (bad magic)", 2},
        {"shorter than the magic", cmd("full", "short.npy"),
         "fam-run: --q: 'short.npy': not a .npy file (too short)", 2},
        {"format 4.0", cmd("full", "v4.npy"),
         "fam-run: --q: 'v4.npy': unsupported .npy format version 4.0 (1.0, 2.0 and 3.0 are "
         "read)",
         2},
        {"format 1.1", cmd("full", "v11.npy"),
         "fam-run: --q: 'v11.npy': unsupported .npy format version 1.1 (1.0, 2.0 and 3.0 are "
         "read)",
         2},
        {"header length beyond the file", cmd("full", "hdrlen.npy"),
         "fam-run: --q: 'hdrlen.npy': truncated .npy header", 2},
        {"header cut short", cmd("full", "hdrtrunc.npy"),
         "fam-run: --q: 'hdrtrunc.npy': truncated .npy header", 2},
        {"header not a dict", cmd("full", "notdict.npy"),
         "fam-run: --q: 'notdict.npy': malformed .npy header: header is not a dict", 2},
        {"header without shape", cmd("full", "nokey.npy"),
         "fam-run: --q: 'nokey.npy': malformed .npy header: no 'shape' key", 2},
        {"header with an extra key", cmd("full", "extrakey.npy"),
         "fam-run: --q: 'extrakey.npy': malformed .npy header: unexpected key 'x'", 2},
        {"header with a duplicate key", cmd("full", "dupkey.npy"),
         "fam-run: --q: 'dupkey.npy': malformed .npy header: duplicate key 'descr'", 2},
        {"negative dimension", cmd("full", "negshape.npy"),
         "fam-run: --q: 'negshape.npy': malformed .npy header: shape holds a negative size", 2},
        {"float dimension", cmd("full", "floatshape.npy"),
         "fam-run: --q: 'floatshape.npy': malformed .npy header: malformed integer in header", 2},
        {"shape not a tuple", cmd("full", "listshape.npy"),
         "fam-run: --q: 'listshape.npy': malformed .npy header: shape is not a tuple", 2},
        {"dimension beyond int64", cmd("full", "hugeshape.npy"),
         "fam-run: --q: 'hugeshape.npy': malformed .npy header: shape size too large", 2},
        {"element count overflows", cmd("full", "overflow.npy"),
         "fam-run: --q: 'overflow.npy': shape (4294967296, 4294967296, 8) is too large", 2},
        {"unterminated string", cmd("full", "unterminated.npy"),
         "fam-run: --q: 'unterminated.npy': malformed .npy header: expected ',' or '}' in header "
         "dict",
         2},
        {"fortran_order not a bool", cmd("full", "fortranstr.npy"),
         "fam-run: --q: 'fortranstr.npy': malformed .npy header: fortran_order is not True or "
         "False",
         2},
        {"structured dtype", cmd("full", "structured.npy"),
         "fam-run: --q: 'structured.npy': unsupported dtype (structured or non-string descr); "
         "need '<f4' or '<f8'",
         2},
        {"truncated data", cmd("full", "trunc.npy"),
         "fam-run: --q: 'trunc.npy': truncated data: shape (6, 4, 8) of '<f4' needs 768 bytes, "
         "the file has 765",
         2},
        {"trailing bytes", cmd("full", "trailing.npy"),
         "fam-run: --q: 'trailing.npy': trailing bytes after the data: shape (6, 4, 8) of '<f4' "
         "needs 768 bytes, the file has 772",
         2},
        {"NaN in Q", cmd("full", "qnan.npy"), "fam-run: --q: element (2, 1, 3) is not finite", 2},
        {"inf in V", cmd("full", "q.npy", "k.npy", "vinf.npy"),
         "fam-run: --v: element (0, 0, 0) is not finite", 2},
        {"f8 value beyond float32", cmd("full", "qbig8.npy"),
         "fam-run: --q: 'qbig8.npy': float64 value 1e+300 at flat index 41 does not fit in "
         "float32",
         2},
        {"K length differs", cmd("full", "q.npy", "kshort.npy"),
         "fam-run: --k: length 5 != L = 6 (--q has shape (6, 4, 8))", 2},
        {"V length differs", cmd("full", "q.npy", "k.npy", "vshort.npy"),
         "fam-run: --v: length 5 != L = 6 (--q has shape (6, 4, 8))", 2},
        {"K head dim differs", cmd("full", "q.npy", "kd.npy"),
         "fam-run: --k: head dim 9 != D = 8 (--q has shape (6, 4, 8))", 2},
        {"V head dim differs", cmd("full", "q.npy", "k.npy", "vd.npy"),
         "fam-run: --v: head dim 7 != D = 8 (--q has shape (6, 4, 8))", 2},
        {"V kv heads differ from K", cmd("full", "q.npy", "k.npy", "vh.npy"),
         "fam-run: --v: kv heads 4 != Hkv = 2 of --k", 2},
        {"H % Hkv != 0", cmd("full", "q.npy", "k3.npy", "v3.npy"),
         "fam-run: --k: H = 4 is not a multiple of Hkv = 3", 2},
        {"zero heads", cmd("full", "q0h.npy"),
         "fam-run: --q: H (dimension 1) must be >= 1, got shape (6, 0, 8)", 2},
        {"zero head dim", cmd("full", "q0d.npy", "k0d.npy", "v0d.npy"),
         "fam-run: --q: D (dimension 2) must be >= 1, got shape (6, 4, 0)", 2},
        {"head dim above the backend limit", cmd("full", "qbig.npy", "kbig.npy", "vbig.npy"),
         "fam-run: --q: head dim D = 1025 exceeds the reference backend's maximum 1024", 2},
        {"swa without --window", cmd("swa"), "fam-run: --window: missing (needed by --variant swa)",
         2},
        {"window 0", cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "0"}),
         "fam-run: --window: must be >= 1, got 0", 2},
        {"window -3", cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "-3"}),
         "fam-run: --window: must be >= 1, got -3", 2},
        {"window not numeric",
         cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "seven"}),
         "fam-run: --window: 'seven' is not an integer", 2},
        {"window 2.5", cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "2.5"}),
         "fam-run: --window: '2.5' is not an integer", 2},
        {"window beyond int64",
         cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "99999999999999999999"}),
         "fam-run: --window: '99999999999999999999' is out of range", 2},
        {"window with a space", cmd("swa", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", " 4"}),
         "fam-run: --window: ' 4' is not an integer", 2},
        {"bswa without --block", cmd("bswa", "q.npy", "k.npy", "v.npy", "o.npy", {"--memory", "1"}),
         "fam-run: --block: missing (needed by --variant bswa)", 2},
        {"block 0",
         cmd("bswa", "q.npy", "k.npy", "v.npy", "o.npy", {"--block", "0", "--memory", "1"}),
         "fam-run: --block: must be >= 1, got 0", 2},
        {"memory -1",
         cmd("bswa", "q.npy", "k.npy", "v.npy", "o.npy", {"--block", "2", "--memory", "-1"}),
         "fam-run: --memory: must be >= 0, got -1", 2},
        {"scale 0", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--scale", "0"}),
         "fam-run: --scale: must be > 0, got 0", 2},
        {"scale nan", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--scale", "nan"}),
         "fam-run: --scale: 'nan' is not a number", 2},
        {"scale 1e999", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--scale", "1e999"}),
         "fam-run: --scale: '1e999' is not a finite number", 2},
        {"scale with trailing text",
         cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--scale", "0.5s"}),
         "fam-run: --scale: '0.5s' is not a number", 2},
        {"window with full", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--window", "3"}),
         "fam-run: --window: not used by --variant full", 2},
        {"fam-init with bswa",
         cmd("bswa", "q.npy", "k.npy", "v.npy", "o.npy",
             {"--block", "2", "--memory", "1", "--fam-init", "p.npy"}),
         "fam-run: --fam-init: not used by --variant bswa", 2},
        {"fam-out with full",
         cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--fam-out", "pf.npy"}),
         "fam-run: --fam-out: only --variant fam writes a state", 2},
        {"fam without --fam-init", fam_cmd({}, true, false),
         "fam-run: --fam-init: missing (needed by --variant fam)", 2},
        {"fam without --block", fam_cmd({}, false, true),
         "fam-run: --block: missing (needed by --variant fam)", 2},
        {"fam with GQA",
         args_t{"--variant", "fam", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out",
                "o.npy", "--block", "2", "--memory", "1", "--fam-init", "p.npy"},
         "fam-run: --k: --variant fam needs Hkv == H (got Hkv = 2, H = 4)", 2},
        {"fam-init rank 2", fam_cmd({"--fam-init", "p2d.npy"}, true, false),
         "fam-run: --fam-init: expected a 3-d array [H, F, D], got shape (4, 8)", 2},
        {"fam-init heads differ", fam_cmd({"--fam-init", "pH.npy"}, true, false),
         "fam-run: --fam-init: heads 5 != H = 4 (shape [H, F, D])", 2},
        {"fam-init head dim differs", fam_cmd({"--fam-init", "pD.npy"}, true, false),
         "fam-run: --fam-init: head dim 9 != D = 8 (shape [H, F, D])", 2},
        {"fam-out same as out", fam_cmd({"--fam-out", "o.npy"}),
         "fam-run: --fam-out: same path as --out", 2},
        {"fam-out in a missing directory", fam_cmd({"--fam-out", "nodir/pf.npy"}),
         "fam-run: --fam-out: cannot create a file in 'nodir/': No such file or directory", 2},
        {"out in a missing directory", cmd("full", "q.npy", "k.npy", "v.npy", "nodir/o.npy"),
         "fam-run: --out: cannot create a file in 'nodir/': No such file or directory", 2},
        {"out is a directory", cmd("full", "q.npy", "k.npy", "v.npy", "adir.npy"),
         "fam-run: --out: 'adir.npy' is a directory", 2},
        {"unknown option", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--foo", "1"}),
         "fam-run: --foo: unknown option (see --help)", 2},
        {"option given twice", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--q", "q.npy"}),
         "fam-run: --q: given more than once", 2},
        {"option without a value", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--scale"}),
         "fam-run: --scale: missing value", 2},
        {"option followed by an option",
         cmd("full", "", "k.npy", "v.npy", "o.npy", {"--q", "--scale", "1"}),
         "fam-run: --q: missing value", 2},
        {"empty value", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"--window="}),
         "fam-run: --window: empty value", 2},
        {"positional argument", cmd("full", "q.npy", "k.npy", "v.npy", "o.npy", {"extra.npy"}),
         "fam-run: extra.npy: unexpected argument (see --help)", 2},
        {"control characters in an argument",
         {"--bad\x01name"},
         "fam-run: --bad?name: unknown option (see --help)",
         2},
    };
    const std::map<std::string, std::string> before = listing(".");
    for (const row& r : rows) {
      const std::string what = r.what;
      CAPTURE(what);
      const outcome o = run(r.args, capture);
      CHECK(o.code == r.code);
      CHECK(o.err == std::string(r.message) + "\n");
      CHECK(o.out.empty());
      CHECK(listing(".") == before);
    }

    // an existing output survives a failed run and is replaced by a good one
    spill("o.npy", "previous");
    const std::map<std::string, std::string> with_old = listing(".");
    CHECK(run(cmd("full", "q.npy", "kshort.npy"), capture).code == 2);
    CHECK(listing(".") == with_old);
    const outcome good = run(cmd(), capture);
    CHECK(good.code == 0);
    CHECK(good.err.empty());
    CHECK(slurp("o.npy").rfind("\x93NUMPY", 0) == 0);
    const outcome help = run({"--help"}, capture);
    CHECK(help.code == 0);
    CHECK(help.out.rfind("usage: fam-run", 0) == 0);

    REQUIRE(chdir(here) == 0);
    for (const auto& [name, bytes] : listing(work)) std::remove((work + "/" + name).c_str());
    rmdir((work + "/adir.npy").c_str());
    rmdir(work.c_str());
    std::remove((capture + "/out").c_str());
    std::remove((capture + "/err").c_str());
    rmdir(capture.c_str());
    rmdir(dir.c_str());
  }
}
