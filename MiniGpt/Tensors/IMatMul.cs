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

    /// <summary>C[M,N] (+)= A[M,K] · B[N,K]ᵀ  (backward to inputs: dY · Wᵀ; attention scores Q·Kᵀ)</summary>
    void NT(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate);

    /// <summary>C[M,N] (+)= A[K,M]ᵀ · B[K,N]  (backward to weights: Xᵀ · dY)</summary>
    void TN(ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate);
}

/// <summary>Which implementation the model uses; tests and the debugger can switch to the scalar one.</summary>
public static class Kernels
{
    public static readonly IMatMul Scalar = new ScalarMatMul();
    public static readonly IMatMul Simd = new SimdMatMul();

    /// <summary>The matmul every layer calls. Set MINIGPT_KERNELS=scalar to step through the plain loops.</summary>
    public static IMatMul MatMul { get; set; } = ScalarRequested ? Scalar : Simd;

    /// <summary>
    /// Whether the layers use their fast kernels (fused, register-blocked attention, one-matmul Q/K/V
    /// projection, vectorised parallel GELU and AdamW) or the readable reference loops beside them.
    /// MINIGPT_KERNELS=scalar selects the reference loops (and the scalar matmul).
    /// </summary>
    public static bool Fast
    {
        get => _fastOnThisThread ?? _fast;
        set => _fast = value;
    }

    private static bool _fast = !ScalarRequested;
    [ThreadStatic] private static bool? _fastOnThisThread;

    /// <summary>Overrides <see cref="Fast"/> for calls made from this thread (null: back to the global setting), so tests compare both side by side.</summary>
    public static void UseFastOnThisThread(bool? fast) => _fastOnThisThread = fast;

    private static bool ScalarRequested =>
        string.Equals(Environment.GetEnvironmentVariable("MINIGPT_KERNELS"), "scalar", StringComparison.OrdinalIgnoreCase);

    internal static void CheckShapes(string form, int m, int n, int k, int cRows, int cCols)
    {
        if (cRows != m || cCols != n)
            throw new ArgumentException($"matmul {form}: C is [{cRows}, {cCols}] but A and B give [{m}, {n}] (inner {k})");
    }
}
