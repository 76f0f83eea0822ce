using System.Numerics.Tensors;
using MiniGpt.Layers;
using MiniGpt.Tensors;

namespace MiniGpt.Generation;

/// <summary>
/// Attention of one new query over the cached keys, every head: for position t (its own k and v already in
/// rows t of the cache), for each head h
///   s[j] = q_h·k[j, h] / √d_head  (j ≤ t)          (hook_attn_scores' row t)
///   p = softmax(s[0..t])                             (hook_pattern's row t)
///   z_h = Σ_{j ≤ t} p[j]·v[j, h]                     (hook_z's row t)
/// Causal by construction: the cache holds nothing after t. These are the operations, in the same order, of
/// Attention.HeadForward's row t, so a query costs O(t·d_model) instead of a whole window's O(T²·d_model).
/// Heads run as tasks on the worker pool once the context is long enough to pay for it; each head writes only
/// its own z and score row, so the result is the same for any thread count.
/// </summary>
public static unsafe class CachedAttention
{
    private struct Job { public float* Q, K, V, S, Z; public int T, H, Dh, NCtx; public float Scale; }

    // q, z [H, dh]; keys, values [n_ctx, H, dh] with rows 0..t valid; scores [H, n_ctx] scratch
    public static void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, Span<float> scores, Span<float> z,
        int t, int H, int dh, int nCtx)
    {
        int HD = H * dh;
        if (t < 0 || t >= nCtx || q.Length < HD || z.Length < HD || keys.Length < (t + 1) * HD || values.Length < (t + 1) * HD || scores.Length < H * nCtx)
            throw new ArgumentException($"cached attention at position {t}: buffers do not match [n_ctx={nCtx}, H={H}, d_head={dh}]");
        fixed (float* pq = q, pk = keys, pv = values, ps = scores, pz = z)
        {
            var job = new Job { Q = pq, K = pk, V = pv, S = ps, Z = pz, T = t, H = H, Dh = dh, NCtx = nCtx, Scale = 1f / MathF.Sqrt(dh) };
            RowParallel.Run(&Head, &job, H, 2L * (t + 1) * HD);
        }
    }

    private static void Head(void* ctx, int h)
    {
        var j = (Job*)ctx;
        int dh = j->Dh, HD = j->H * dh, n = j->T + 1;
        var q = new ReadOnlySpan<float>(j->Q + h * dh, dh);
        var s = new Span<float>(j->S + (long)h * j->NCtx, n);
        float* k = j->K + h * dh, v = j->V + h * dh;
        for (int i = 0; i < n; i++) s[i] = TensorPrimitives.Dot(q, new ReadOnlySpan<float>(k + (long)i * HD, dh)) * j->Scale;
        Softmax.Forward(s, s);
        var z = new Span<float>(j->Z + h * dh, dh);
        z.Clear();
        for (int i = 0; i < n; i++) TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(v + (long)i * HD, dh), s[i], z, z);
    }
}
