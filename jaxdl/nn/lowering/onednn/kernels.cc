// Every kernel in one translation unit: oneDNN's and XLA's headers, most of the build's time, are parsed once.
// Each file keeps its names in a namespace of its own (conv_kernels, pooling_kernels, ...).
#include "batch_norm.cc"
#include "conv.cc"
#include "pooling.cc"
#include "recurrent.cc"
