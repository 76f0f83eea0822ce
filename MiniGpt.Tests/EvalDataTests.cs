using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Training;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>EvalData.Open: eval and circuits measure the same windows of the same --data; 'induction' is a default train run's validation set.</summary>
public class EvalDataTests
{
    [Fact]
    public void EvalAndCircuitsMeasureTheSameWindows()
    {
        string dir = TestPaths.TempDir("evaldata-text");
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("the cat sat on the mat.\n", 30))); // 720 characters: 44 windows of 16
        var tok = CharTokenizer.FromText(File.ReadAllText(text));
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = tok.VocabSize }, 1);
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, tok.ToJson());

        var e = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", text, "--batch-size", "4", "--json");
        Assert.True(e.Code == 0, e.Err);
        var ej = JsonDocument.Parse(e.Out).RootElement;
        Assert.Equal(44, ej.GetProperty("windows").GetInt32());
        // all 44 windows are the first 11 batches of 4: circuits' clean data loss is eval's loss, bit for bit
        var c = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--data", text, "--batch-size", "4", "--batches", "11", "--json", "--out", Path.Combine(dir, "c"));
        Assert.True(c.Code == 0, c.Err);
        var cj = JsonDocument.Parse(c.Out).RootElement;
        Assert.Equal(ej.GetProperty("loss").GetDouble(), cj.GetProperty("ablation").GetProperty("clean").GetProperty("data").GetDouble());
        Assert.Equal(44 * 16, cj.GetProperty("data").GetProperty("tokens").GetInt32());

        // fewer batches: the first windows, from the start of the file
        var set = EvalData.Open(text, Checkpoint.Load(ckpt), 4, 2);
        var ids = tok.Encode(File.ReadAllText(text), text);
        Assert.Equal(2, set.Batches.Count);
        Assert.Equal(ids[..(4 * 16)], set.Batches[0].Inputs);
        Assert.Equal(ids[(4 * 16 + 1)..(8 * 16 + 1)], set.Batches[1].Targets);
        Assert.Null(set.Batches[0].Mask);
        Assert.Contains("from its start", set.Description);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void InductionIsTheValidationSetOfADefaultTrainRun()
    {
        string dir = TestPaths.TempDir("evaldata-induction");
        string ckpt = Path.Combine(dir, "m.safetensors");
        // a default run's data, batch and evaluation batches; the shape is smaller, which the windows do not depend on
        var trainer = Trainer.Start(new TrainOptions { Model = new ModelConfig { NLayers = 1, DModel = 32, NHeads = 2 }, Out = ckpt });
        trainer.Save(ckpt);
        var (val, repeat) = trainer.Evaluate();

        // another batch size regroups the same 256 windows (the last batch holds 16)
        var r = TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", "induction", "--batch-size", "24", "--json");
        Assert.True(r.Code == 0, r.Err);
        var j = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(256, j.GetProperty("windows").GetInt32());
        Assert.Equal(val, j.GetProperty("loss").GetDouble(), 1e-6);
        Assert.Equal(repeat!.Value, j.GetProperty("predictable_loss").GetDouble(), 1e-6);
        Assert.Contains("predictable positions", TestPaths.Cli("eval", "--checkpoint", ckpt, "--data", "induction").Out);

        var set = EvalData.Open("induction", Checkpoint.Load(ckpt), 32, 4);
        Assert.Equal(4, set.Batches.Count);
        Assert.True(set.HasMask);
        Assert.Equal(InductionTask.MaxValidationBatches * 32, EvalData.InductionWindows);
        Directory.Delete(dir, true);
    }
}
