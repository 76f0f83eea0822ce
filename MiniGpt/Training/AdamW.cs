using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MiniGpt.Layers;
using MiniGpt.Tensors;

namespace MiniGpt.Training;

/// <summary>
/// The AdamW update (see <see cref="Optimizer"/>) over the flat parameter buffer and its gradient and
/// moments, which share one layout, segment by segment. <see cref="UpdateReference"/> is the readable form;
/// <see cref="Update"/> does the same arithmetic Vector256 at a time over fixed chunks across the worker pool.
/// Each element's update is the same operations in the same order (no fused multiply-add), so the two are
/// bitwise equal, on any thread count.
/// </summary>
public static unsafe class AdamW
{
    // p, g, m, v: the flat buffers; per element i of each segment, with g the gradient times GradScale (a float product,
    // so exactly the gradient a separate clipping pass would have stored; × 1 changes no bit):
    //   p ← p·(1 − lr·λ) if the segment decays;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p − lr·(m/bc1) / (√(v/bc2) + ε)
    public static void UpdateReference(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep s)
    {
        foreach (var (start, length, decay) in segments)
        {
            var ps = p.Slice(start, length); var gs = g.Slice(start, length); var ms = m.Slice(start, length); var vs = v.Slice(start, length);
            if (decay) TensorPrimitives.Multiply(ps, s.DecayFactor, ps);
            for (int i = 0; i < ps.Length; i++)
            {
                float gi = gs[i] * s.GradScale;
                float mi = ms[i] = s.Beta1 * ms[i] + (1f - s.Beta1) * gi;
                float vi = vs[i] = s.Beta2 * vs[i] + (1f - s.Beta2) * gi * gi;
                ps[i] -= s.Lr * (mi / s.Bc1) / (MathF.Sqrt(vi / s.Bc2) + s.Eps);
            }
        }
    }

    private const int Chunk = 1 << 14;

    private struct Job
    {
        public float* P, G, M, V;
        public ParamSegment* Segs;
        public int* FirstTask; // task index of each segment's first chunk; [count + 1]
        public int SegCount;
        public AdamWStep Step;
    }

    /// <summary><see cref="UpdateReference"/>, each segment cut into chunks of 16K elements, one task per chunk.</summary>
    public static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep s)
    {
        int n = segments.Length;
        Span<int> first = n < 1024 ? stackalloc int[n + 1] : new int[n + 1];
        first[0] = 0;
        for (int i = 0; i < n; i++)
        {
            if (segments[i].Start + segments[i].Length > p.Length) throw new ArgumentException("AdamW: a segment lies outside the parameter buffer");
            first[i + 1] = first[i] + (segments[i].Length + Chunk - 1) / Chunk;
        }
        if (g.Length < p.Length || m.Length < p.Length || v.Length < p.Length) throw new ArgumentException("AdamW: gradients and moments must have the parameters' layout");
        fixed (float* pp = p, pg = g, pm = m, pv = v)
        fixed (ParamSegment* ps = segments)
        fixed (int* pf = first)
        {
            var job = new Job { P = pp, G = pg, M = pm, V = pv, Segs = ps, FirstTask = pf, SegCount = n, Step = s };
            WorkerPool.Current.Run(&ChunkTask, &job, first[n]);
        }
    }

    private static void ChunkTask(void* ctx, int t)
    {
        var j = (Job*)ctx;
        // the segment this chunk belongs to: the last one whose first task is ≤ t
        int lo = 0, hi = j->SegCount - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (j->FirstTask[mid] <= t) lo = mid; else hi = mid - 1;
        }
        var seg = j->Segs[lo];
        int offset = (t - j->FirstTask[lo]) * Chunk, len = Math.Min(Chunk, seg.Length - offset);
        long start = (long)seg.Start + offset;
        float* p = j->P + start, g = j->G + start, m = j->M + start, v = j->V + start;
        var s = j->Step;
        bool decay = seg.Decay;
        float dec = s.DecayFactor, lr = s.Lr, b1 = s.Beta1, b2 = s.Beta2, bc1 = s.Bc1, bc2 = s.Bc2, eps = s.Eps;
        float c1 = 1f - b1, c2 = 1f - b2, scale = s.GradScale;
        var vscale = Vector256.Create(scale);
        var vdec = Vector256.Create(dec); var vlr = Vector256.Create(lr);
        var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2); var vc1 = Vector256.Create(c1); var vc2 = Vector256.Create(c2);
        var vbc1 = Vector256.Create(bc1); var vbc2 = Vector256.Create(bc2); var veps = Vector256.Create(eps);
        int i = 0;
        for (; i <= len - 8; i += 8)
        {
            var gi = Vector256.Load(g + i) * vscale;
            var pi = Vector256.Load(p + i);
            if (decay) pi *= vdec;
            var mi = vb1 * Vector256.Load(m + i) + vc1 * gi;
            var vi = vb2 * Vector256.Load(v + i) + vc2 * gi * gi;
            mi.Store(m + i);
            vi.Store(v + i);
            pi -= vlr * (mi / vbc1) / (Vector256.Sqrt(vi / vbc2) + veps);
            pi.Store(p + i);
        }
        for (; i < len; i++)
        {
            float gi = g[i] * scale;
            if (decay) p[i] *= dec;
            float mi = m[i] = b1 * m[i] + c1 * gi;
            float vi = v[i] = b2 * v[i] + c2 * gi * gi;
            p[i] -= lr * (mi / bc1) / (MathF.Sqrt(vi / bc2) + eps);
        }
    }
}
