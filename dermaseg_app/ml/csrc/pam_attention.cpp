// Position attention (DANet PAM) on the CPU, fused: softmax(Q K^T) V with scale 1, one head,
// query/key width d (C/8: 2 to 16 in SLSNet) independent of the value width C.
//
// The general fused kernels (scaled_dot_product_attention) need one head size for q, k and v,
// so the q-k half would have to be zero-padded from d to C (8 times the work there), and the
// unfused path materialises the N x M matrix in memory. Here a block of RB query rows at a time
// keeps its RB x M scores in a thread-local buffer (L2-sized), so nothing N x M ever reaches
// memory; the q-k products are done at width d. The backward pass recomputes the block's scores
// from the saved log-sum-exp (as flash attention does) instead of storing them.
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

// scores s[i][j] = sum_t q[i][t] * kt[t][j] for the rows of a block.
inline void block_scores(const float* q, int rows, int d, const float* kt, int64_t m, float* s) {
  for (int i = 0; i < rows; ++i) {
    float* si = s + i * m;
    const float q0 = q[i * d];
    const float* k0 = kt;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) si[j] = q0 * k0[j];
    for (int t = 1; t < d; ++t) {
      const float qt = q[i * d + t];
      const float* kr = kt + t * m;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) si[j] += qt * kr[j];
    }
  }
}

// out[i][c0:c0+CB] = sum_j p[i][j] * v[j][c0:c0+CB], for RB rows (rows <= RB).
template <int CB>
inline void block_pv(const float* p, int rows, int64_t m, const float* v, int64_t c, int64_t c0,
                     float* out, int64_t out_stride) {
  float acc[RB][CB];
  for (int i = 0; i < RB; ++i)
    for (int cc = 0; cc < CB; ++cc) acc[i][cc] = 0.0f;
  for (int64_t j = 0; j < m; ++j) {
    const float* vj = v + j * c + c0;
    for (int i = 0; i < RB; ++i) {
      const float pij = i < rows ? p[i * m + j] : 0.0f;
#pragma omp simd
      for (int cc = 0; cc < CB; ++cc) acc[i][cc] += pij * vj[cc];
    }
  }
  for (int i = 0; i < rows; ++i)
    for (int cc = 0; cc < CB; ++cc) out[i * out_stride + c0 + cc] = acc[i][cc];
}

inline void rows_pv(const float* p, int rows, int64_t m, const float* v, int64_t c, float* out) {
  int64_t c0 = 0;
  for (; c0 + 32 <= c; c0 += 32) block_pv<32>(p, rows, m, v, c, c0, out, c);
  for (; c0 + 16 <= c; c0 += 16) block_pv<16>(p, rows, m, v, c, c0, out, c);
  for (; c0 + 8 <= c; c0 += 8) block_pv<8>(p, rows, m, v, c, c0, out, c);
  for (; c0 < c; ++c0) block_pv<1>(p, rows, m, v, c, c0, out, c);
}

constexpr int JV = 16;  // j values per vector block

// ds[i][j] = p[i][j] * (sum_c g[i][c] * vt[c][j] - delta[i]), blocked: RB x JV accumulators.
inline void block_ds(const float* p, int rows, int64_t m, const float* vt, int64_t c, const float* g,
                     const float* delta, float* ds) {
  float gl[RB][64];
  int64_t j0 = 0;
  for (; j0 + JV <= m; j0 += JV) {
    float acc[RB][JV];
    for (int i = 0; i < RB; ++i)
      for (int jj = 0; jj < JV; ++jj) acc[i][jj] = 0.0f;
    for (int64_t c0 = 0; c0 < c; c0 += 64) {
      const int64_t cn = std::min<int64_t>(64, c - c0);
      for (int i = 0; i < RB; ++i)
        for (int64_t cc = 0; cc < cn; ++cc) gl[i][cc] = i < rows ? g[i * c + c0 + cc] : 0.0f;
      for (int64_t cc = 0; cc < cn; ++cc) {
        const float* vr = vt + (c0 + cc) * m + j0;
        for (int i = 0; i < RB; ++i) {
          const float gic = gl[i][cc];
#pragma omp simd
          for (int jj = 0; jj < JV; ++jj) acc[i][jj] += gic * vr[jj];
        }
      }
    }
    for (int i = 0; i < rows; ++i) {
      const float del = delta[i];
#pragma omp simd
      for (int jj = 0; jj < JV; ++jj) ds[i * m + j0 + jj] = p[i * m + j0 + jj] * (acc[i][jj] - del);
    }
  }
  for (; j0 < m; ++j0) {
    for (int i = 0; i < rows; ++i) {
      float acc = 0.0f;
      for (int64_t cc = 0; cc < c; ++cc) acc += g[i * c + cc] * vt[cc * m + j0];
      ds[i * m + j0] = p[i * m + j0] * (acc - delta[i]);
    }
  }
}

// dv[j][c0:c0+CB] += sum_i p[i][j] * g[i][c0:c0+CB], 4 j at a time.
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
        const float pij = p[i * m + j0 + jj];
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
      const float pij = p[i * m + j0];
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

// dkt[t][j] += sum_i q[i][t] * ds[i][j]
inline void block_dk(const float* ds, int rows, int64_t m, const float* q, int d, float* dkt) {
  float ql[16][RB];
  for (int t0 = 0; t0 < d; t0 += 16) {
    const int tn = std::min(16, d - t0);
    for (int t = 0; t < tn; ++t)
      for (int i = 0; i < RB; ++i) ql[t][i] = i < rows ? q[i * d + t0 + t] : 0.0f;
    int64_t j0 = 0;
    for (; j0 + JV <= m; j0 += JV) {
      float dl[RB][JV];
      for (int i = 0; i < RB; ++i)
#pragma omp simd
        for (int jj = 0; jj < JV; ++jj) dl[i][jj] = i < rows ? ds[i * m + j0 + jj] : 0.0f;
      for (int t = 0; t < tn; ++t) {
        float* dk = dkt + (t0 + t) * m + j0;
        float acc[JV];
#pragma omp simd
        for (int jj = 0; jj < JV; ++jj) acc[jj] = dk[jj];
        for (int i = 0; i < RB; ++i) {
          const float qi = ql[t][i];
#pragma omp simd
          for (int jj = 0; jj < JV; ++jj) acc[jj] += qi * dl[i][jj];
        }
#pragma omp simd
        for (int jj = 0; jj < JV; ++jj) dk[jj] = acc[jj];
      }
    }
    for (; j0 < m; ++j0)
      for (int t = 0; t < tn; ++t)
        for (int i = 0; i < rows; ++i) dkt[(t0 + t) * m + j0] += ql[t][i] * ds[i * m + j0];
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
    std::vector<float> s(static_cast<size_t>(RB) * m);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / blocks, r0 = (task % blocks) * RB;
      const int rows = static_cast<int>(std::min<int64_t>(RB, n - r0));
      const float* kb = kp + bi * d * m;
      const float* vb = vp + bi * m * c;
      block_scores(qp + (bi * n + r0) * d, rows, static_cast<int>(d), kb, m, s.data());
      float inv[RB];
      for (int i = 0; i < rows; ++i) {
        float* si = s.data() + i * m;
        float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < m; ++j) mx = std::max(mx, si[j]);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < m; ++j) {
          const float e = exp_neg(si[j] - mx);
          si[j] = e;
          sum += e;
        }
        inv[i] = 1.0f / sum;
        lp[bi * n + r0 + i] = mx + std::log(sum);
      }
      float* ob = op + (bi * n + r0) * c;
      rows_pv(s.data(), rows, m, vb, c, ob);
      for (int i = 0; i < rows; ++i)
#pragma omp simd
        for (int64_t cc = 0; cc < c; ++cc) ob[i * c + cc] *= inv[i];
    }
  });
  return {o, lse};
}

// Gradients of o = softmax(q k^T) v. delta = rowsum(do * o) (B, N). Returns dq (B, N, d),
// dkt (B, d, M), dv (B, M, C). Work is split over (batch, slice of query blocks); each slice
// accumulates its own dk and dv, summed at the end when a batch has more than one slice.
std::vector<torch::Tensor> pam_backward(torch::Tensor q, torch::Tensor kt, torch::Tensor v, torch::Tensor vt,
                                        torch::Tensor lse, torch::Tensor dout, torch::Tensor delta) {
  q = q.contiguous(); kt = kt.contiguous(); v = v.contiguous(); vt = vt.contiguous();
  lse = lse.contiguous(); dout = dout.contiguous(); delta = delta.contiguous();
  TORCH_CHECK(dout.dtype() == torch::kFloat32 && vt.dtype() == torch::kFloat32, "pam_backward: float32 expected");
  const int64_t b = q.size(0), n = q.size(1), d = q.size(2), m = v.size(1), c = v.size(2);
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = (n + RB - 1) / RB;
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>(blocks, (threads + b - 1) / b));
  auto dq = torch::empty({b, n, d}, q.options());
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
  (void)v;
  at::parallel_for(0, b * slices, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(static_cast<size_t>(RB) * m), ds(static_cast<size_t>(RB) * m);
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
        block_scores(qb, rows, static_cast<int>(d), kb, m, p.data());
        for (int i = 0; i < rows; ++i) {
          sub_exp(p.data() + i * m, m, lp[bi * n + r0 + i]);
        }
        block_ds(p.data(), rows, m, vtb, c, gb, dp + bi * n + r0, ds.data());
        block_dv(p.data(), rows, m, gb, c, dvb);
        // dq[i][t] = sum_j ds[i][j] * k[j][t]
        for (int i = 0; i < rows; ++i) {
          const float* di = ds.data() + i * m;
          for (int64_t t = 0; t < d; ++t) {
            const float* kr = kb + t * m;
            float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < m; ++j) acc += di[j] * kr[j];
            dqp[(bi * n + r0 + i) * d + t] = acc;
          }
        }
        block_dk(ds.data(), rows, m, qb, static_cast<int>(d), dkb);
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
