using System.Numerics.Tensors;

namespace MiniGpt.Layers;

public static class Softmax
{
    /// <summary>
    /// y = exp(x − max x) / Σ exp(x − max x). Subtracting the max keeps exp from overflowing for large
    /// scores: TensorPrimitives.SoftMax (System.Numerics.Tensors 10.0) exponentiates x directly, and gives NaN for [100, 0].
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y) => Forward(x, y, out _, out _);

    /// <summary>
    /// <see cref="Forward(ReadOnlySpan{float}, Span{float})"/>, also giving the max and the sum it divided by: with them,
    /// <see cref="Recompute"/> makes y again, bit for bit, from x alone (tiled attention keeps these two numbers per query
    /// row instead of the row).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, out float max, out float sum)
    {
        max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, y);
        TensorPrimitives.Exp(y, y);
        sum = TensorPrimitives.Sum(y);
        TensorPrimitives.Divide(y, sum, y);
    }

    /// <summary>
    /// y = exp(x − max) / sum with the max and sum that Forward gave for x: Forward's own operations minus the two
    /// reductions, so Forward's y bit for bit. The span must be as long as Forward's was: TensorPrimitives.Exp runs
    /// spans of fewer than 4 floats through scalar MathF.Exp and longer ones through its vector code, which round
    /// differently (see Attention.ShortRows).
    /// </summary>
    public static void Recompute(ReadOnlySpan<float> x, float max, float sum, Span<float> y)
    {
        TensorPrimitives.Subtract(x, max, y);
        TensorPrimitives.Exp(y, y);
        TensorPrimitives.Divide(y, sum, y);
    }
}
