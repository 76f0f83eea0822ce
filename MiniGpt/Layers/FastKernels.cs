using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>
/// The kernels a model runs by default: the packed SIMD matmul (<see cref="SimdMatMul"/>), the all-head Q/K/V
/// projection and the fused, register-blocked attention of AttentionFast.cs, and the row-wise kernels
/// (LayerNorm, cross-entropy, bias, residual, GELU, AdamW) in fixed chunks across the worker pool. Each is
/// tested against its <see cref="ReferenceKernels"/> twin; the chunks depend on the shape only, so results
/// are bitwise the same for any thread count. Not sealed only so that a benchmark can swap one kernel for a
/// baseline (GenerateBench's first GEMV).
/// </summary>
public class FastKernels : IKernels
{
    public virtual string Name => "fast";
    public IMatMul MatMul { get; } = new SimdMatMul();

    public void AddBias(Span<float> y, ReadOnlySpan<float> b, int N, int O) => Linear.AddBias(y, b, N, O);
    public void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C) => Linear.SumRows(m, acc, N, C);
    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => RowParallel.Add(a, b, dst);

    public void LayerNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, Span<float> mean, Span<float> rstd, int N, int C) =>
        LayerNorm.Forward(x, w, b, y, mean, rstd, N, C);

    public void LayerNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C) =>
        LayerNorm.Backward(x, w, mean, rstd, dy, dx, dw, db, N, C);

    public void GeluForward(ReadOnlySpan<float> x, Span<float> y) => Gelu.Forward(x, y);

    public void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate) =>
        Gelu.Backward(x, dy, dx, accumulate);

    public double CrossEntropyForward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V) =>
        CrossEntropy.Forward(logits, targets, losses, N, V);

    public void CrossEntropyBackward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V) =>
        CrossEntropy.Backward(logits, targets, dLogits, scale, N, V);

    public void ProjectQkv(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh) =>
        Attention.ProjectQkv(this, xqk, xv, w, q, k, v, B, T, D, H, dh);

    public void ProjectQkvBackward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w, in Attention.Grads g,
        ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh) =>
        Attention.ProjectQkvBackward(this, xqk, xv, w, g, dq, dk, dv, dxqk, dxv, N, D, H, dh);

    public void Heads(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z,
        int B, int T, int H, int dh, HeadStages stages) =>
        Attention.Heads(q, k, v, scores, pattern, z, B, T, H, dh, stages);

    public void HeadsBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz,
        Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages) =>
        Attention.HeadsBackward(q, k, v, pattern, dz, dq, dk, dv, dPattern, dScores, B, T, H, dh, stages);

    public void HeadsTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z, Span<float> softmaxMax, Span<float> softmaxSum,
        int B, int T, int H, int dh, Span<float> pattern = default) =>
        Attention.HeadsTiled(q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern);

    public void HeadsTiledBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, int B, int T, int H, int dh) =>
        Attention.HeadsTiledBackward(q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh);

    public virtual void Gemv(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O) =>
        Generation.Gemv.Forward(x, w, b, y, G, I, O);

    public void AdamW(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep step) =>
        Training.AdamW.Update(p, g, m, v, segments, step);
}
