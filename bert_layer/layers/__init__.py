"""The Keras side of the hub module: reading a module, running its graphs on the layer's
own weights, pooling, dtype policies and `BertLayer` itself. No BERT maths here."""
