using System.Numerics.Tensors;
using MiniGpt.Tensors;
using static MiniGpt.Tensors.Views;

namespace MiniGpt.Layers;

/// <summary>y = x·W + b with W stored [in, out] (TransformerLens's W_in, W_out, W_U, W_O layout).</summary>
public static class Linear
{
    // x [N,I], W [I,O], b [O] or empty → y [N,O]
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int N, int I, int O)
    {
        Kernels.MatMul.NN(Mat(x, N, I), Mat(w, I, O), Mat(y, N, O), accumulate: false);
        if (!b.IsEmpty)
            for (int n = 0; n < N; n++) TensorPrimitives.Add(y.Slice(n * O, O), b, y.Slice(n * O, O));
    }

    // differentiates: y = x·W + b
    //   dW += xᵀ·dy,  db += Σ_n dy[n],  dx (+)= dy·Wᵀ
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy,
        Span<float> dx, Span<float> dw, Span<float> db, int N, int I, int O, bool accumulateDx)
    {
        Kernels.MatMul.TN(Mat(x, N, I), Mat(dy, N, O), Mat(dw, I, O), accumulate: true);
        if (!db.IsEmpty) SumRows(dy, db, N, O);
        if (!dx.IsEmpty) Kernels.MatMul.NT(Mat(dy, N, O), Mat(w, I, O), Mat(dx, N, I), accumulateDx);
    }

    /// <summary>acc[c] += Σ_n m[n,c], rows in order (deterministic).</summary>
    public static void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C)
    {
        for (int n = 0; n < N; n++) TensorPrimitives.Add(acc, m.Slice(n * C, C), acc);
    }
}
