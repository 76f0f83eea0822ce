using MiniGpt.Tensors;
using MiniGpt.Training;

namespace MiniGpt.Layers;

/// <summary>
/// The readable kernels: the scalar matmul and the plain loops beside each layer (LayerNorm.ForwardReference,
/// Attention.HeadForward, …), one row or one head after another. Slow on purpose; MINIGPT_KERNELS=scalar
/// gives them to a model, tests compare <see cref="FastKernels"/> against them, and a debugger steps them.
/// </summary>
public sealed class ReferenceKernels : IKernels
{
    public string Name => "reference";
    public IMatMul MatMul { get; } = new ScalarMatMul();

    public void AddBias(Span<float> y, ReadOnlySpan<float> b, int N, int O) => Linear.AddBiasReference(y, b, N, O);
    public void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C) => Linear.SumRowsReference(m, acc, N, C);
    public void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst) => System.Numerics.Tensors.TensorPrimitives.Add(a, b, dst);

    public void LayerNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, Span<float> mean, Span<float> rstd, int N, int C) =>
        LayerNorm.ForwardReference(x, w, b, y, mean, rstd, N, C);

    public void LayerNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C) =>
        LayerNorm.BackwardReference(x, w, mean, rstd, dy, dx, dw, db, xhat, g, N, C);

    public void GeluForward(ReadOnlySpan<float> x, Span<float> y) => Gelu.ForwardReference(x, y);

    public void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate) =>
        Gelu.BackwardReference(x, dy, dx, tScratch, accumulate);

    public double CrossEntropyForward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V) =>
        CrossEntropy.ForwardReference(logits, targets, losses, N, V);

    public void CrossEntropyBackward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V) =>
        CrossEntropy.BackwardReference(logits, targets, dLogits, scale, N, V);

    public void ProjectQkv(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh) =>
        Attention.ProjectQkvReference(MatMul, xqk, xv, w, q, k, v, B, T, D, H, dh);

    public void ProjectQkvBackward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w, in Attention.Grads g,
        ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh) =>
        Attention.ProjectQkvBackwardReference(MatMul, xqk, xv, w, g, dq, dk, dv, dxqk, dxv, N, D, H, dh);

    public void Heads(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z,
        int B, int T, int H, int dh, HeadStages stages) =>
        Attention.HeadsReference(q, k, v, scores, pattern, z, B, T, H, dh, stages);

    public void HeadsBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz,
        Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages) =>
        Attention.HeadsBackwardReference(q, k, v, pattern, dz, dq, dk, dv, dPattern, dScores, B, T, H, dh, stages);

    public void HeadsTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z, Span<float> softmaxMax, Span<float> softmaxSum,
        int B, int T, int H, int dh, Span<float> pattern = default) =>
        Attention.HeadsTiledReference(q, k, v, z, softmaxMax, softmaxSum, B, T, H, dh, pattern);

    public void HeadsTiledBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, int B, int T, int H, int dh) =>
        Attention.HeadsTiledBackwardReference(q, k, v, softmaxMax, softmaxSum, dz, dq, dk, dv, B, T, H, dh);

    public void Gemv(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O) =>
        Generation.Gemv.Reference(x, w, b, y, G, I, O);

    public void AdamW(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep step) =>
        Training.AdamW.UpdateReference(p, g, m, v, segments, step);
}
