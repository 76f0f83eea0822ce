using CommunityToolkit.HighPerformance;

namespace MiniGpt.Tensors;

/// <summary>
/// The three matrix products training needs, over row-major 2-D views (a view's rows may be
/// strided, e.g. one head's columns inside a [tokens, heads·d_head] activation).
/// With accumulate false C is overwritten, otherwise the product is added to C.
/// </summary>
public interface IMatMul
{
    /// <summary>C[M,N] (+)= A[M,K] · B[K,N]  (forward: activations · weights)</summary>
    void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate);

    /// <summary>C[M,N] = A[M,K] · B[K,N] + bias[N] in every row (a linear layer's forward, its bias added as C is stored)</summary>
    void NN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, ReadOnlySpan<float> bias, Span2D<float> c);

    /// <summary>C[M,N] (+)= A[M,K] · B[N,K]ᵀ  (backward to inputs: dY · Wᵀ; attention scores Q·Kᵀ)</summary>
    void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate);

    /// <summary>C[M,N] (+)= A[K,M]ᵀ · B[K,N]  (backward to weights: Xᵀ · dY)</summary>
    void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate);
}

/// <summary>The shape check both implementations share.</summary>
internal static class MatMulShapes
{
    public static void Check(string form, int m, int n, int k, int cRows, int cCols)
    {
        if (cRows != m || cCols != n)
            throw new ArgumentException($"matmul {form}: C is [{cRows}, {cCols}] but A and B give [{m}, {n}] (inner {k})");
    }
}
