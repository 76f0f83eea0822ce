using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>
/// The readable reference: one output element at a time, summing over k in order.
/// Slow on purpose; tests compare the fast kernel against it and a debugger can step it.
/// </summary>
public sealed class ScalarMatMul : IMatMul
{
    public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        // c[i,j] = Σ_k a[i,k]·b[k,j]
        int m = a.Height, k = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul NN: A is [{m}, {k}] but B is [{b.Height}, {n}]");
        MatMulShapes.Check("NN", m, n, k, c.Height, c.Width);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += a[i, p] * b[p, j];
                c[i, j] = accumulate ? c[i, j] + s : s;
            }
    }

    public void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, ReadOnlySpan<float> bias, Span2D<float> c)
    {
        // c[i,j] = Σ_k a[i,k]·b[k,j], then c[i,j] += bias[j]
        if (bias.Length < b.Width) throw new ArgumentException($"matmul NN: the bias has {bias.Length} values for {b.Width} columns");
        NN(a, b, c, accumulate: false);
        for (int i = 0; i < c.Height; i++)
            for (int j = 0; j < c.Width; j++) c[i, j] += bias[j];
    }

    public void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        // c[i,j] = Σ_k a[i,k]·b[j,k]
        int m = a.Height, k = a.Width, n = b.Height;
        if (b.Width != k) throw new ArgumentException($"matmul NT: A is [{m}, {k}] but B is [{n}, {b.Width}]");
        MatMulShapes.Check("NT", m, n, k, c.Height, c.Width);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += a[i, p] * b[j, p];
                c[i, j] = accumulate ? c[i, j] + s : s;
            }
    }

    public void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        // c[i,j] = Σ_k a[k,i]·b[k,j]
        int k = a.Height, m = a.Width, n = b.Width;
        if (b.Height != k) throw new ArgumentException($"matmul TN: A is [{k}, {m}] but B is [{b.Height}, {n}]");
        MatMulShapes.Check("TN", m, n, k, c.Height, c.Width);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = 0;
                for (int p = 0; p < k; p++) s += a[p, i] * b[p, j];
                c[i, j] = accumulate ? c[i, j] + s : s;
            }
    }
}
