using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Training;

/// <summary>
/// AdamW (Loshchilov and Hutter, "Decoupled Weight Decay Regularization", 2019), as torch.optim.AdamW:
///   θ ← θ − lr·λ·θ                       (decoupled decay, only for tensors that decay; see ParameterLayout.Decays)
///   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
///   θ ← θ − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
/// or plain SGD: θ ← θ − lr·λ·θ − lr·g. Moments live in two arenas with the parameters' layout.
/// </summary>
public sealed unsafe class Optimizer
{
    public string Kind { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Eps { get; }
    public float WeightDecay { get; }
    public Arena M { get; }
    public Arena V { get; }
    /// <summary>Updates applied so far (Adam's t).</summary>
    public long Step { get; set; }

    private readonly (Tensor P, Tensor G, Tensor M, Tensor V, bool Decay)[] _slots;

    public Optimizer(GptModel model, string kind, float beta1, float beta2, float eps, float weightDecay)
    {
        if (kind is not ("adamw" or "sgd")) throw new UserError($"optimizer '{kind}' is unknown: use adamw or sgd");
        Kind = kind; Beta1 = beta1; Beta2 = beta2; Eps = eps; WeightDecay = weightDecay;
        M = ParameterLayout.Declare(model.Config).Build();
        V = ParameterLayout.Declare(model.Config).Build();
        var ps = model.Params.Tensors;
        _slots = new (Tensor, Tensor, Tensor, Tensor, bool)[ps.Count];
        for (int i = 0; i < ps.Count; i++)
            _slots[i] = (ps[i], model.Grads.Tensors[i], M.Tensors[i], V.Tensors[i], ParameterLayout.Decays(ps[i]));
    }

    public void Update(float lr)
    {
        if (Kernels.Fast && Kind == "adamw") { UpdateFast(lr); return; }
        UpdateReference(lr);
    }

    /// <summary>The readable form of <see cref="Update"/>: one tensor, one element at a time.</summary>
    public void UpdateReference(float lr)
    {
        Step++;
        float bc1 = 1f - MathF.Pow(Beta1, Step);
        float bc2 = 1f - MathF.Pow(Beta2, Step);
        foreach (var (pt, gt, mt, vt, decay) in _slots)
        {
            var p = pt.Span; var g = gt.Span;
            if (decay && WeightDecay != 0) TensorPrimitives.Multiply(p, 1f - lr * WeightDecay, p);
            if (Kind == "sgd")
            {
                TensorPrimitives.MultiplyAdd(g, -lr, p, p);
                continue;
            }
            var m = mt.Span; var v = vt.Span;
            for (int i = 0; i < p.Length; i++)
            {
                float gi = g[i];
                float mi = m[i] = Beta1 * m[i] + (1f - Beta1) * gi;
                float vi = v[i] = Beta2 * v[i] + (1f - Beta2) * gi * gi;
                p[i] -= lr * (mi / bc1) / (MathF.Sqrt(vi / bc2) + Eps);
            }
        }
    }

    // ---- fast AdamW: the same arithmetic, Vector256 at a time, over fixed chunks of the flat parameter
    // buffer (params, grads and both moments share one layout) split across the worker pool. Each
    // element's update is the scalar one operation for operation (no fused multiply-add), so results are
    // bitwise those of UpdateReference for any thread count.
    private const int Chunk = 1 << 14;
    private (int Start, int Length, bool Decay)[]? _segments;

    private struct AdamJob
    {
        public float* P, G, M, V;
        public (int Start, int Length, bool Decay)* Segs;
        public int SegCount;
        public float Lr, Decay, B1, B2, Bc1, Bc2, Eps;
    }

    private void UpdateFast(float lr)
    {
        Step++;
        var job = new AdamJob
        {
            Lr = lr, Decay = 1f - lr * WeightDecay, B1 = Beta1, B2 = Beta2, Eps = Eps,
            Bc1 = 1f - MathF.Pow(Beta1, Step), Bc2 = 1f - MathF.Pow(Beta2, Step),
        };
        if (WeightDecay == 0) job.Decay = 1f;
        _segments ??= BuildSegments();
        fixed (float* p = _slots[0].P.Buffer, g = _slots[0].G.Buffer, m = _slots[0].M.Buffer, v = _slots[0].V.Buffer)
        fixed ((int, int, bool)* segs = _segments)
        {
            job.P = p; job.G = g; job.M = m; job.V = v; job.Segs = segs; job.SegCount = _segments.Length;
            Tensors.WorkerPool.Current.Run(&AdamSegments, &job, _segments.Length);
        }
    }

    // every tensor cut into pieces of at most Chunk elements: the tasks
    private (int, int, bool)[] BuildSegments()
    {
        var list = new List<(int, int, bool)>();
        foreach (var (pt, gt, mt, vt, decay) in _slots)
        {
            if (gt.Buffer != _slots[0].G.Buffer || mt.Buffer != _slots[0].M.Buffer || vt.Buffer != _slots[0].V.Buffer || pt.Buffer != _slots[0].P.Buffer
                || gt.Offset != pt.Offset || mt.Offset != pt.Offset || vt.Offset != pt.Offset)
                throw new InvalidOperationException("AdamW: parameters, gradients and moments must share one layout");
            int len = pt.Span.Length;
            for (int s = 0; s < len; s += Chunk) list.Add(((int)pt.Offset + s, Math.Min(Chunk, len - s), decay));
        }
        return list.ToArray();
    }

    private static void AdamSegments(void* ctx, int t)
    {
        var j = (AdamJob*)ctx;
        var (start, len, decay) = j->Segs[t];
        float* p = j->P + start, g = j->G + start, m = j->M + start, v = j->V + start;
        float dec = decay ? j->Decay : 1f, lr = j->Lr, b1 = j->B1, b2 = j->B2, bc1 = j->Bc1, bc2 = j->Bc2, eps = j->Eps;
        float c1 = 1f - b1, c2 = 1f - b2;
        var vdec = Vector256.Create(dec); var vlr = Vector256.Create(lr);
        var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2); var vc1 = Vector256.Create(c1); var vc2 = Vector256.Create(c2);
        var vbc1 = Vector256.Create(bc1); var vbc2 = Vector256.Create(bc2); var veps = Vector256.Create(eps);
        int i = 0;
        for (; i <= len - 8; i += 8)
        {
            var gi = Vector256.Load(g + i);
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
            float gi = g[i];
            if (decay) p[i] *= dec;
            float mi = m[i] = b1 * m[i] + c1 * gi;
            float vi = v[i] = b2 * v[i] + c2 * gi * gi;
            p[i] -= lr * (mi / bc1) / (MathF.Sqrt(vi / bc2) + eps);
        }
    }
}

/// <summary>nanoGPT's schedule: linear warm-up to lr, then cosine decay to min_lr at the last step.</summary>
public static class LrSchedule
{
    public static float At(long step, float lr, float minLr, int warmup, long totalSteps)
    {
        if (step < warmup) return lr * (step + 1) / (warmup + 1);
        if (step >= totalSteps) return minLr;
        double ratio = (double)(step - warmup) / Math.Max(1, totalSteps - warmup);
        double coeff = 0.5 * (1.0 + Math.Cos(Math.PI * ratio));
        return (float)(minLr + coeff * (lr - minLr));
    }
}

public static class GradClip
{
    /// <summary>Global L2 norm of all gradients; if above maxNorm (and maxNorm > 0), scales them down to it. Returns the norm before clipping.</summary>
    public static float ClipGlobalNorm(float[] grads, float maxNorm)
    {
        // sum of squares in fixed chunks, combined in double, so the result does not depend on threads
        double ss = 0;
        const int chunk = 1 << 14;
        for (int i = 0; i < grads.Length; i += chunk)
            ss += TensorPrimitives.SumOfSquares(grads.AsSpan(i, Math.Min(chunk, grads.Length - i)));
        float norm = (float)Math.Sqrt(ss);
        if (maxNorm > 0 && norm > maxNorm) TensorPrimitives.Multiply(grads, maxNorm / norm, grads);
        return norm;
    }
}
