using System.Numerics.Tensors;

namespace MiniGpt.Layers;

public static class Softmax
{
    /// <summary>
    /// y = exp(x − max x) / Σ exp(x − max x). Subtracting the max keeps exp from overflowing for large
    /// scores: TensorPrimitives.SoftMax (System.Numerics.Tensors 10.0) exponentiates x directly, and gives NaN for [100, 0].
    /// </summary>
    public static void Forward(ReadOnlySpan<float> x, Span<float> y)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, y);
        TensorPrimitives.Exp(y, y);
        float sum = TensorPrimitives.Sum(y);
        TensorPrimitives.Divide(y, sum, y);
    }
}
