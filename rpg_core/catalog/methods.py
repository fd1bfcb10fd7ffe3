"""The methods registry: the ways to shrink a network that a spec's ``method`` can name (issue
24: RPG against pruning, hashing and width on one parameter axis), known without torch.

Each method reads ``method.budget`` as a number of backbone parameters (the paper's count: an
RPG network's ring elements, a plain network's conv weights except the stem, a pruned
network's non-zero ones), or as a fraction in (0, 1] of the backbone of the plain network the
spec's ``model`` section names (the dense network every method shrinks). ``rpg methods`` and
``GET /api/methods`` list them; ``docs/METHODS.md`` describes each.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import RPGConfigError

__all__ = ["METHODS", "MethodInfo", "list_methods", "method_info"]


@dataclass(frozen=True)
class MethodInfo:
    """One way to shrink a network to a parameter budget."""

    name: str  # method.name
    description: str
    reference: str  # the paper it comes from
    budget: str  # how method.budget is read, in words
    min_budget: int = 1  # the smallest budget (backbone parameters) the method can meet
    trains_dense_first: bool = False  # it trains the plain network before shrinking it

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "reference": self.reference,
            "budget": self.budget,
            "min_budget": self.min_budget,
            "trains_dense_first": self.trains_dense_first,
        }


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo(
            "rpg",
            "recurrent parameter generator: every conv kernel is generated from one shared "
            "ring by a seeded permutation and sign flip; every ring element is used evenly",
            "Wang et al., Recurrent Parameter Generators (Section 5.5, Fig. 1 right)",
            "the ring size (rpg.ring_size = budget): the ring elements are the backbone",
        ),
        MethodInfo(
            "width",
            "the plain network made narrower: one channel multiplier for every layer",
            "Zagoruyko and Komodakis, Wide Residual Networks (2016): width as the size axis",
            "the model.width whose plain backbone (conv weights except the stem) is closest "
            "to the budget, found by bisection over the width",
        ),
        MethodInfo(
            "hashed",
            "HashedNets: every weight reads a ring element chosen by a hash of its position "
            "(sampling with replacement, so elements are used unevenly) with a hashed sign",
            "Chen et al., Compressing Neural Networks with the Hashing Trick (ICML 2015)",
            "the shared vector's size, as rpg's ring size (generator version 3, splitmix64-hash)",
        ),
        MethodInfo(
            "prune-global",
            "global unstructured L1 magnitude pruning of the trained plain network "
            "(torch.nn.utils.prune.global_unstructured), in rounds with fine-tuning",
            "Han et al., Learning both Weights and Connections (NeurIPS 2015); "
            "Blalock et al., What is the State of Neural Network Pruning? (MLSys 2020)",
            "the backbone weights left non-zero after pruning",
            trains_dense_first=True,
        ),
        MethodInfo(
            "prune-filters",
            "structured L1 filter pruning of the trained plain network: in every residual "
            "block the conv1 filters of lowest L1 norm go (with their bn1 channel and conv2 "
            "column), the same share per block, in rounds with fine-tuning",
            "Li et al., Pruning Filters for Efficient ConvNets (ICLR 2017); "
            "Blalock et al., What is the State of Neural Network Pruning? (MLSys 2020)",
            "the backbone weights left after removing whole filters, met within one filter",
            trains_dense_first=True,
        ),
    )
}


def list_methods() -> list[str]:
    """The method names in registry order."""
    return list(METHODS)


def method_info(name: str) -> MethodInfo:
    """The method called ``name``; RPGConfigError naming the known ones otherwise."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise RPGConfigError(
            f"method.name: unknown method {name!r}; use one of {', '.join(METHODS)}"
        ) from None
