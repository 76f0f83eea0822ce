using MiniGpt.Checkpoints;

namespace MiniGpt.Train.Runs;

/// <summary>
/// "A checkpoint or a run folder", as every verb that reads a checkpoint takes it (--checkpoint of eval, sample,
/// circuits, patch, sae and convert; train's --init-from): a run folder runs/NAME stands for the checkpoint that
/// train --resume would continue, its model.safetensors (a run keeps one, replaced at every checkpoint, so it is
/// the latest, and at the end of the run the final one). Anything else goes to Checkpoint.Load as given: a
/// .safetensors file, llm.c's .bin, a Hugging Face GPT-2 folder (a folder whose config.json has model_type gpt2).
/// </summary>
public static class CheckpointPath
{
    public static string Resolve(string path)
    {
        if (!Directory.Exists(path) || HuggingFaceGpt2.Is(path)) return path;
        // a config.json that is not a run's (no "train" settings) is a broken or foreign model folder: Checkpoint.Load
        // says what is wrong with it, rather than reading the weights beside it as a run's
        string config = Path.Combine(path, "config.json");
        if (File.Exists(config)) return IsRunConfig(config) ? RunFolder.CheckpointIn(path) : path; // a run's checkpoint, as --resume finds it
        string ckpt = Path.Combine(path, RunFolder.CheckpointName);
        if (File.Exists(ckpt)) return ckpt;
        throw new UserError($"'{path}' is a folder without {RunFolder.CheckpointName}: give a run folder (runs/NAME), a .safetensors checkpoint or a Hugging Face GPT-2 folder");
    }

    /// <summary>Whether config.json is a run folder's (RunFolder.ConfigJson: an object with a "train" object).</summary>
    private static bool IsRunConfig(string path)
    {
        try { return System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)) is System.Text.Json.Nodes.JsonObject o && o["train"] is System.Text.Json.Nodes.JsonObject; }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException) { return false; }
    }
}
