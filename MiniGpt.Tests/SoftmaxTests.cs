using MiniGpt.Layers;
using Xunit;

namespace MiniGpt.Tests;

public class SoftmaxTests
{
    [Fact]
    public void LargeScoresDoNotOverflow()
    {
        var y = new float[3];
        Softmax.Forward(new[] { 1000f, 999f, float.NegativeInfinity }, y);
        Assert.Equal(1 / (1 + Math.Exp(-1)), y[0], 6);
        Assert.Equal(1 / (1 + Math.Exp(1)), y[1], 6);
        Assert.Equal(0f, y[2]);
    }
}
