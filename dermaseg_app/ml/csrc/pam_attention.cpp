// Position attention (DANet PAM) on the CPU, fused: softmax(Q K^T) V with scale 1, one head,
// query/key width d (C/8: 2 to 16 in SLSNet) independent of the value width C.
//
// The general fused kernels (scaled_dot_product_attention) need one head size for q, k and v,
// so the q-k half would have to be zero-padded from d to C (8 times the work there), and the
// unfused path materialises the N x M matrix in memory. Here a block of RB query rows at a time
// keeps its RB x M scores in a thread-local buffer (L2-sized), so nothing N x M ever reaches
// memory; the q-k products are done at width d. Keys are taken in chunks of JC so that a block's
// scores, probabilities and gradients stay in the L1 cache: the forward keeps a running row
// maximum and rescales its sums (online softmax, as flash attention does), and the backward
// recomputes the block's probabilities from the saved log-sum-exp instead of storing them.
//
// All arithmetic is float32. exp is a Cephes-style polynomial (relative error about 2e-7 on the
// range used, x <= 0) written so that the compiler vectorises it; nothing depends on libmvec.
//
// Layout (all contiguous float32): q (B, N, d), kt (B, d, M) (the keys transposed), v (B, M, C),
// vt (B, C, M). Outputs: o (B, N, C), lse (B, N).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

constexpr int RB = 8;  // query rows per block (register blocking of the value products)

inline float exp_neg(float x) {
  // exp(x) for x <= 0 (x - rowmax); 2^-126 * p below -87. Branch-free, so that loops calling it
  // vectorise (with -fno-trapping-math): n = round(x / ln 2) by truncation (x <= 0), r = x - n ln 2
  // in two parts, exp(r) by a degree-6 polynomial, 2^n from the exponent bits.
  x = x < -87.0f ? -87.0f : x;
  const int ni = static_cast<int>(x * 1.44269504088896341f - 0.5f);
  const float n = static_cast<float>(ni);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int e = ni + 127;  // x >= -87 keeps ni >= -126
  return p * __builtin_bit_cast(float, e << 23);
}

// s[j] = exp(s[j] - sub), s[j] <= sub.
inline void sub_exp(float* __restrict s, int64_t m, float sub) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) s[j] = exp_neg(s[j] - sub);
}

// scores s[i][j] = sum_t q[i][t] * kt[t][j] for the rows of a block and the keys [0, m) of a
// chunk (kt's row stride ldk, s's row stride lds); one pass over the chunk per row.
template <int D>
inline void block_scores_d(const float* q, int rows, const float* kt, int64_t ldk, int64_t m, float* s,
                           int64_t lds) {
  for (int i = 0; i < rows; ++i) {
    float qi[D];
    for (int t = 0; t < D; ++t) qi[t] = q[i * D + t];
    float* si = s + i * lds;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) {
      float acc = qi[0] * kt[j];
      for (int t = 1; t < D; ++t) acc += qi[t] * kt[t * ldk + j];
      si[j] = acc;
    }
  }
}

inline void block_scores(const float* q, int rows, int d, const float* kt, int64_t ldk, int64_t m, float* s,
                         int64_t lds) {
  switch (d) {
    case 1: return block_scores_d<1>(q, rows, kt, ldk, m, s, lds);
    case 2: return block_scores_d<2>(q, rows, kt, ldk, m, s, lds);
    case 4: return block_scores_d<4>(q, rows, kt, ldk, m, s, lds);
    case 8: return block_scores_d<8>(q, rows, kt, ldk, m, s, lds);
    case 16: return block_scores_d<16>(q, rows, kt, ldk, m, s, lds);
    default: break;
  }
  for (int i = 0; i < rows; ++i) {
    float* si = s + i * lds;
    for (int64_t j = 0; j < m; ++j) si[j] = 0.0f;
    for (int t = 0; t < d; ++t) {
      const float qt = q[i * d + t];
      const float* kr = kt + t * ldk;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) si[j] += qt * kr[j];
    }
  }
}

// out[i][c0:c0+CB] += sum_j p[i][j] * v[j][c0:c0+CB] over a chunk of m keys, for RB rows
// (rows <= RB); p's row stride ldp, v's row stride c, out's row stride c.
template <int CB>
inline void block_pv(const float* p, int64_t ldp, int rows, int64_t m, const float* v, int64_t c, int64_t c0,
                     float* out) {
  float acc[RB][CB];
  for (int i = 0; i < RB; ++i)
    for (int cc = 0; cc < CB; ++cc) acc[i][cc] = i < rows ? out[i * c + c0 + cc] : 0.0f;
  for (int64_t j = 0; j < m; ++j) {
    const float* vj = v + j * c + c0;
    for (int i = 0; i < RB; ++i) {
      const float pij = i < rows ? p[i * ldp + j] : 0.0f;
#pragma omp simd
      for (int cc = 0; cc < CB; ++cc) acc[i][cc] += pij * vj[cc];
    }
  }
  for (int i = 0; i < rows; ++i)
    for (int cc = 0; cc < CB; ++cc) out[i * c + c0 + cc] = acc[i][cc];
}

inline void rows_pv(const float* p, int64_t ldp, int rows, int64_t m, const float* v, int64_t c, float* out) {
  int64_t c0 = 0;
  for (; c0 + 32 <= c; c0 += 32) block_pv<32>(p, ldp, rows, m, v, c, c0, out);
  for (; c0 + 16 <= c; c0 += 16) block_pv<16>(p, ldp, rows, m, v, c, c0, out);
  for (; c0 + 8 <= c; c0 += 8) block_pv<8>(p, ldp, rows, m, v, c, c0, out);
  for (; c0 < c; ++c0) block_pv<1>(p, ldp, rows, m, v, c, c0, out);
}

constexpr int JV = 16;   // keys per vector block
constexpr int JC = 256;  // keys per chunk: a block's RB x JC tiles stay in L1

// ds[i][j] = p[i][j] * (sum_c g[i][c] * vt[c][j] - delta[i]) over a chunk of m keys (p and ds
// with row stride JC, vt with row stride ldv), blocked: RB x JV accumulators. gp is the block's
// output gradient padded to RB rows (zeros past ``rows``), row stride c.
inline void block_ds(const float* p, int rows, int64_t m, const float* vt, int64_t ldv, int64_t c, const float* gp,
                     const float* delta, float* ds) {
  int64_t j0 = 0;
  for (; j0 + JV <= m; j0 += JV) {
    float acc[RB][JV];
    for (int i = 0; i < RB; ++i)
      for (int jj = 0; jj < JV; ++jj) acc[i][jj] = 0.0f;
    for (int64_t cc = 0; cc < c; ++cc) {
      const float* vr = vt + cc * ldv + j0;
      for (int i = 0; i < RB; ++i) {
        const float gic = gp[i * c + cc];
#pragma omp simd
        for (int jj = 0; jj < JV; ++jj) acc[i][jj] += gic * vr[jj];
      }
    }
    for (int i = 0; i < rows; ++i) {
      const float del = delta[i];
#pragma omp simd
      for (int jj = 0; jj < JV; ++jj) ds[i * JC + j0 + jj] = p[i * JC + j0 + jj] * (acc[i][jj] - del);
    }
  }
  for (; j0 < m; ++j0) {
    for (int i = 0; i < rows; ++i) {
      float acc = 0.0f;
      for (int64_t cc = 0; cc < c; ++cc) acc += gp[i * c + cc] * vt[cc * ldv + j0];
      ds[i * JC + j0] = p[i * JC + j0] * (acc - delta[i]);
    }
  }
}

// dv[j][c0:c0+CB] += sum_i p[i][j] * g[i][c0:c0+CB] over a chunk of m keys, 4 keys at a time.
template <int CB>
inline void block_dv_cols(const float* p, int rows, int64_t m, const float* g, int64_t c, int64_t c0, float* dv) {
  constexpr int JB = 4;
  int64_t j0 = 0;
  for (; j0 + JB <= m; j0 += JB) {
    float acc[JB][CB];
    for (int jj = 0; jj < JB; ++jj)
      for (int cc = 0; cc < CB; ++cc) acc[jj][cc] = 0.0f;
    for (int i = 0; i < rows; ++i) {
      const float* gi = g + i * c + c0;
      for (int jj = 0; jj < JB; ++jj) {
        const float pij = p[i * JC + j0 + jj];
#pragma omp simd
        for (int cc = 0; cc < CB; ++cc) acc[jj][cc] += pij * gi[cc];
      }
    }
    for (int jj = 0; jj < JB; ++jj) {
      float* dvj = dv + (j0 + jj) * c + c0;
#pragma omp simd
      for (int cc = 0; cc < CB; ++cc) dvj[cc] += acc[jj][cc];
    }
  }
  for (; j0 < m; ++j0) {
    for (int i = 0; i < rows; ++i) {
      const float pij = p[i * JC + j0];
      for (int cc = 0; cc < CB; ++cc) dv[j0 * c + c0 + cc] += pij * g[i * c + c0 + cc];
    }
  }
}

inline void block_dv(const float* p, int rows, int64_t m, const float* g, int64_t c, float* dv) {
  int64_t c0 = 0;
  for (; c0 + 32 <= c; c0 += 32) block_dv_cols<32>(p, rows, m, g, c, c0, dv);
  for (; c0 + 16 <= c; c0 += 16) block_dv_cols<16>(p, rows, m, g, c, c0, dv);
  for (; c0 + 8 <= c; c0 += 8) block_dv_cols<8>(p, rows, m, g, c, c0, dv);
  for (; c0 < c; ++c0) block_dv_cols<1>(p, rows, m, g, c, c0, dv);
}

// dq[i][t] += sum_j ds[i][j] * kt[t][j]; dkt[t][j] += sum_i q[i][t] * ds[i][j] (chunk of m keys).
inline void block_dq_dk(const float* ds, int rows, int64_t m, const float* q, int d, const float* kt, int64_t ldk,
                        float* dq, float* dkt) {
  for (int i = 0; i < rows; ++i) {
    const float* di = ds + i * JC;
    for (int t = 0; t < d; ++t) {
      const float* kr = kt + t * ldk;
      float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < m; ++j) acc += di[j] * kr[j];
      dq[i * d + t] += acc;
    }
  }
  for (int t = 0; t < d; ++t) {
    float* __restrict dk = dkt + t * ldk;
    for (int i = 0; i < rows; ++i) {  // the chunk is in L1: one pass per row costs little
      const float qt = q[i * d + t];
      const float* __restrict di = ds + i * JC;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) dk[j] += qt * di[j];
    }
  }
}

}  // namespace

std::vector<torch::Tensor> pam_forward(torch::Tensor q, torch::Tensor kt, torch::Tensor v) {
  TORCH_CHECK(q.dtype() == torch::kFloat32 && kt.dtype() == torch::kFloat32 && v.dtype() == torch::kFloat32,
              "pam_forward: float32 tensors expected");
  q = q.contiguous(); kt = kt.contiguous(); v = v.contiguous();
  const int64_t b = q.size(0), n = q.size(1), d = q.size(2), m = v.size(1), c = v.size(2);
  TORCH_CHECK(kt.size(0) == b && kt.size(1) == d && kt.size(2) == m && v.size(0) == b, "pam_forward: shapes");
  auto o = torch::empty({b, n, c}, q.options());
  auto lse = torch::empty({b, n}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = kt.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = o.data_ptr<float>();
  float* lp = lse.data_ptr<float>();
  const int64_t blocks = (n + RB - 1) / RB;
  at::parallel_for(0, b * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(static_cast<size_t>(RB) * JC);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / blocks, r0 = (task % blocks) * RB;
      const int rows = static_cast<int>(std::min<int64_t>(RB, n - r0));
      const float* kb = kp + bi * d * m;
      const float* vb = vp + bi * m * c;
      const float* qb = qp + (bi * n + r0) * d;
      float* ob = op + (bi * n + r0) * c;
      for (int64_t x = 0; x < rows * c; ++x) ob[x] = 0.0f;
      float mx[RB], sum[RB];
      for (int i = 0; i < RB; ++i) { mx[i] = -std::numeric_limits<float>::infinity(); sum[i] = 0.0f; }
      for (int64_t j0 = 0; j0 < m; j0 += JC) {
        const int64_t mc = std::min<int64_t>(JC, m - j0);
        block_scores(qb, rows, static_cast<int>(d), kb + j0, m, mc, s.data(), JC);
        for (int i = 0; i < rows; ++i) {
          float* si = s.data() + i * JC;
          float cm = mx[i];
#pragma omp simd reduction(max : cm)
          for (int64_t j = 0; j < mc; ++j) cm = si[j] > cm ? si[j] : cm;  // (std::max does not vectorise)
          if (cm > mx[i]) {  // a new row maximum: rescale what was summed so far
            const float scale = mx[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(mx[i] - cm);
            sum[i] *= scale;
            for (int64_t cc = 0; cc < c; ++cc) ob[i * c + cc] *= scale;
            mx[i] = cm;
          }
          const float mi = mx[i];
          float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
          for (int64_t j = 0; j < mc; ++j) {
            const float e = exp_neg(si[j] - mi);
            si[j] = e;
            acc += e;
          }
          sum[i] += acc;
        }
        rows_pv(s.data(), JC, rows, mc, vb + j0 * c, c, ob);
      }
      for (int i = 0; i < rows; ++i) {
        const float inv = 1.0f / sum[i];
#pragma omp simd
        for (int64_t cc = 0; cc < c; ++cc) ob[i * c + cc] *= inv;
        lp[bi * n + r0 + i] = mx[i] + std::log(sum[i]);
      }
    }
  });
  return {o, lse};
}

// Gradients of o = softmax(q k^T) v. delta = rowsum(do * o) (B, N). Returns dq (B, N, d),
// dkt (B, d, M), dv (B, M, C). Work is split over (batch, slice of query blocks); each slice
// accumulates its own dk and dv, summed at the end when a batch has more than one slice.
std::vector<torch::Tensor> pam_backward(torch::Tensor q, torch::Tensor kt, torch::Tensor v, torch::Tensor vt,
                                        torch::Tensor lse, torch::Tensor dout, torch::Tensor delta) {
  q = q.contiguous(); kt = kt.contiguous(); vt = vt.contiguous();
  lse = lse.contiguous(); dout = dout.contiguous(); delta = delta.contiguous();
  TORCH_CHECK(dout.dtype() == torch::kFloat32 && vt.dtype() == torch::kFloat32, "pam_backward: float32 expected");
  const int64_t b = q.size(0), n = q.size(1), d = q.size(2), m = v.size(1), c = v.size(2);
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = (n + RB - 1) / RB;
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(blocks, (threads + b - 1) / b));
  auto dq = torch::zeros({b, n, d}, q.options());
  auto dkt_parts = torch::zeros({slices, b, d, m}, q.options());
  auto dv_parts = torch::zeros({slices, b, m, c}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = kt.data_ptr<float>();
  const float* vtp = vt.data_ptr<float>();
  const float* lp = lse.data_ptr<float>();
  const float* gp = dout.data_ptr<float>();
  const float* dp = delta.data_ptr<float>();
  float* dqp = dq.data_ptr<float>();
  float* dkp = dkt_parts.data_ptr<float>();
  float* dvp = dv_parts.data_ptr<float>();
  at::parallel_for(0, b * slices, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(static_cast<size_t>(RB) * JC), ds(static_cast<size_t>(RB) * JC);
    std::vector<float> gpad(static_cast<size_t>(RB) * c, 0.0f);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / slices, sl = task % slices;
      const int64_t blk0 = blocks * sl / slices, blk1 = blocks * (sl + 1) / slices;
      const float* kb = kp + bi * d * m;
      const float* vtb = vtp + bi * c * m;
      float* dkb = dkp + (sl * b + bi) * d * m;
      float* dvb = dvp + (sl * b + bi) * m * c;
      for (int64_t blk = blk0; blk < blk1; ++blk) {
        const int64_t r0 = blk * RB;
        const int rows = static_cast<int>(std::min<int64_t>(RB, n - r0));
        const float* qb = qp + (bi * n + r0) * d;
        const float* gb = gp + (bi * n + r0) * c;
        std::copy(gb, gb + rows * c, gpad.begin());
        std::fill(gpad.begin() + rows * c, gpad.end(), 0.0f);
        for (int64_t j0 = 0; j0 < m; j0 += JC) {
          const int64_t mc = std::min<int64_t>(JC, m - j0);
          block_scores(qb, rows, static_cast<int>(d), kb + j0, m, mc, p.data(), JC);
          for (int i = 0; i < rows; ++i) sub_exp(p.data() + i * JC, mc, lp[bi * n + r0 + i]);
          block_ds(p.data(), rows, mc, vtb + j0, m, c, gpad.data(), dp + bi * n + r0, ds.data());
          block_dv(p.data(), rows, mc, gb, c, dvb + j0 * c);
          block_dq_dk(ds.data(), rows, mc, qb, static_cast<int>(d), kb + j0, m, dqp + (bi * n + r0) * d,
                      dkb + j0);
        }
      }
    }
  });
  auto dkt = slices == 1 ? dkt_parts[0] : dkt_parts.sum(0);
  auto dv = slices == 1 ? dv_parts[0] : dv_parts.sum(0);
  return {dq, dkt, dv};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.def("forward", &pam_forward, "fused position attention, forward (float32, CPU)");
  mod.def("backward", &pam_backward, "fused position attention, backward (float32, CPU)");
}
