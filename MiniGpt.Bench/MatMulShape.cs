using BenchmarkDotNet.Running;

namespace MiniGpt.Bench;

/// <summary>
/// One matrix product C[M,N] (+)= op(A)·op(B) with inner dimension K, as the kernels name it:
/// NN: A[M,K]·B[K,N];  NT: A[M,K]·B[N,K]ᵀ;  TN: A[K,M]ᵀ·B[K,N].
/// </summary>
public sealed record MatMulShape(string Form, int M, int N, int K)
{
    public double Flops => 2.0 * M * N * K;

    public override string ToString() => $"{Form} {M}x{N}x{K}";

    /// <summary>The product a matmul benchmark case runs, read from its parameters; null for other benchmarks.</summary>
    public static MatMulShape? FromCase(BenchmarkCase benchmarkCase)
    {
        object? Param(string name) => benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == name)?.Value;
        var type = benchmarkCase.Descriptor.Type;
        if (Param("Form") is not string form) return null;
        if (type == typeof(MatMulBench) && Param(nameof(MatMulBench.Layer)) is string layer)
            return MatMulBench.ShapeOf(Param(nameof(MatMulBench.Workload)) as string ?? "WB", layer, form);
        if (type == typeof(MatMulVsScalarBench) && Param(nameof(MatMulVsScalarBench.Size)) is int size)
            return new MatMulShape(form, size, size, size);
        return null;
    }
}
