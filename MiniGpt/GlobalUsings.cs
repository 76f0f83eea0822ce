global using Tensor = MiniGpt.Tensors.Tensor;
