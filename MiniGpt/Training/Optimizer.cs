using System.Numerics.Tensors;
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
public sealed class Optimizer
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
