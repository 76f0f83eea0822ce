using System.Diagnostics;
using System.Reflection;
using MiniGpt.Layers;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The named, shaped views of a layer's inputs and outputs that a Backward makes in Debug builds (DebugViews): the capture
/// gives the right names, shapes and values; in a Release build (what the suite and CI run) the calls are gone, so a
/// Backward captures nothing; in a Debug build of the tests a Backward's views have the layer's names and shapes.
/// (TrainingTests.TrainingStepAllocatesNothingInSteadyState and HookTests' allocation test keep the Release step at 0 B.)
/// </summary>
public class DebugViewsTests
{
    [Fact]
    public void TheCaptureNamesShapesAndCopiesInputsAndOutputs()
    {
        DebugViews? views = null;
        var x = Enumerable.Range(0, 12).Select(i => (float)i).ToArray();
        DebugViews.Add(ref views, "x", x, [3, 4], output: false);
        DebugViews.Add(ref views, "db", default, [4], output: true); // an absent optional tensor: skipped
        // one head of a [T = 3, H = 2, d = 2] tensor: columns 2..3 of each 4-float row
        DebugViews.AddStrided(ref views, "dq", x.AsSpan(2), 3, 4, 2, output: true);
        x[0] = 99; // a copy: later writes do not show
        Assert.Equal(["x", "dq"], views!.Tensors.Select(t => t.Name));
        Assert.Equal([3, 4], views["x"].Shape);
        Assert.Equal(0f, views["x"][0]);
        Assert.Equal([3, 2], views["dq"].Shape);
        Assert.Equal([2f, 3f, 6f, 7f, 10f, 11f], views["dq"].Span.ToArray());
        Assert.Equal("in x [3, 4] | out dq [3, 2]", views.Text);
        Assert.True(views.IsOutput(1));
        // a span too short for the shape is shown flat, never thrown at the program being debugged
        DebugViews.Add(ref views, "short", x.AsSpan(0, 5), [2, 4], output: false);
        Assert.Equal([5], views!.Tensors[^1].Shape);
        Assert.Contains("needs 8 floats", views.Tensors[^1].Name);
    }

    [Fact]
    public void TheLayerCallsAreDebugOnly()
    {
        foreach (var name in new[] { nameof(DebugViews.In), nameof(DebugViews.Out), nameof(DebugViews.InStrided), nameof(DebugViews.OutStrided) })
        {
            var c = typeof(DebugViews).GetMethod(name)!.GetCustomAttribute<ConditionalAttribute>();
            Assert.Equal("DEBUG", c?.ConditionString);
        }
    }

    /// <summary>Linear, LayerNorm, Gelu, CrossEntropy and one attention head's backward, called as the model calls them.</summary>
    [Fact]
    public void ABackwardMakesItsViewsOnlyInDebugBuilds()
    {
        const int N = 3, I = 4, O = 5;
        var r = new Random(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)r.NextDouble() - 0.5f).ToArray();
        var expected = new List<(string Layer, string Text)>();
        var got = new List<(string Layer, string? Text)>();
        void Check(string layer, string text, Action backward)
        {
            DebugViews.Last = null;
            backward();
            expected.Add((layer, text));
            got.Add((layer, DebugViews.Last?.Text));
        }
        Check("Linear", "in x [3, 4], W [4, 5], dy [3, 5] | out dx [3, 4], dW [4, 5], db [5]",
            () => Linear.Backward(Kernels.Reference, R(N * I), R(I * O), R(N * O), new float[N * I], new float[I * O], new float[O], N, I, O, accumulateDx: false));
        Check("LayerNorm", "in x [3, 4], w [4], mean [3], rstd [3], dy [3, 4] | out dx [3, 4], dw [4], db [4]",
            () => LayerNorm.Backward(R(N * I), R(I), R(N), R(N), R(N * I), new float[N * I], new float[I], new float[I], N, I));
        Check("Gelu", "in x [12], dy [12] | out dx [12]", () => Gelu.BackwardReference(R(12), R(12), new float[12], new float[12], accumulate: false));
        Check("CrossEntropy", "in logits [3, 5] | out dlogits [3, 5]", () => CrossEntropy.Backward(R(N * O), [0, 4, 2], new float[N * O], 1f / 3, N, O));
        const int T = 3, H = 2, dh = 2, S = H * dh;
        Check("Attention head", "in q [3, 2], k [3, 2], v [3, 2], pattern [3, 3], dz [3, 2] | out d_pattern [3, 3], d_scores [3, 3], dq [3, 2], dk [3, 2], dv [3, 2]",
            () => Attention.HeadBackward(R(T * S), R(T * S), R(T * S), R(T * T), R(T * S), new float[T * S], new float[T * S], new float[T * S],
                new float[T * T], new float[T * T], T, S, dh, 0.7f, HeadStages.All));
#if DEBUG
        Assert.Equal(expected.Select(e => (e.Layer, (string?)e.Text)), got);
#else
        Assert.All(got, g => Assert.True(g.Text == null, $"{g.Layer}: a Release build captured {g.Text}"));
#endif
    }
}
