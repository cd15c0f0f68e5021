"""Bad input fails loudly, and the message names what is wrong."""

import re

import numpy as np
import pytest

import mlsys_lab.functional as F
from mlsys_lab import Tensor
from mlsys_lab.autograd import make_op


def t(shape, requires_grad=False):
    return Tensor(np.ones(shape, dtype=np.float32), requires_grad=requires_grad)


# -- shapes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op, name", [
    (lambda a, b: a + b, "add"), (lambda a, b: a - b, "sub"), (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"),
])
def test_broadcast_error_names_both_shapes_and_the_op(op, name):
    with pytest.raises(ValueError, match=re.escape(f"cannot broadcast shapes (3, 4) and (5,) for {name}")):
        op(t((3, 4)), t((5,)))


def test_broadcast_error_with_an_ndarray_operand():
    with pytest.raises(ValueError, match=re.escape("(2, 3) and (4, 3)")):
        t((2, 3)) + np.ones((4, 3), dtype=np.float32)


def test_matmul_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(3, 4) @ (5, 6)")) as e:
        t((3, 4)) @ t((5, 6))
    assert "4 != 5" in str(e.value)


def test_matmul_batch_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4) and (3, 4, 5)")):
        t((2, 3, 4)) @ t((3, 4, 5))


def test_matmul_rejects_scalars():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        t(()) @ t((3,))


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=re.escape("shape (2, 3) into shape (4, 2)")):
        t((2, 3)).reshape(4, 2)


def test_transpose_needs_a_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        t((2, 3, 4)).transpose(0, 1)
    with pytest.raises(ValueError, match="not a permutation"):
        t((2, 3)).transpose(0, 0)


@pytest.mark.parametrize("method", ["sum", "mean", "max"])
def test_reduction_axis_out_of_range(method):
    with pytest.raises(ValueError, match=f"{method}: axis 2 is out of range"):
        getattr(t((2, 3)), method)(axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        getattr(t((2, 3)), method)(axis=(1, -1))
    with pytest.raises(TypeError, match="axis must be"):
        getattr(t((2, 3)), method)(axis=1.0)


# -- backward ---------------------------------------------------------------------------------------

def test_backward_on_non_scalar_needs_grad():
    y = t((2, 3), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"one element.*shape \(2, 3\).*grad="):
        y.backward()


def test_backward_grad_with_wrong_shape():
    y = t((2, 3), requires_grad=True) * 2
    with pytest.raises(ValueError, match=re.escape("grad has shape (3,) but the tensor has shape (2, 3)")):
        y.backward(np.ones(3))


def test_backward_without_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (t((1,)) * 2).backward()


def test_requires_grad_on_integer_tensor():
    with pytest.raises(TypeError, match="int64"):
        Tensor(np.arange(3), requires_grad=True)


def test_make_op_backward_with_wrong_shape_is_caught():
    x = t((2, 3), requires_grad=True)
    y = make_op(x.data.sum(axis=0), (x,), lambda g: (g,), name="bad_sum")
    with pytest.raises(ValueError, match=re.escape("'bad_sum' returned a gradient of shape (3,) for an input of shape (2, 3)")):
        y.sum().backward()


def test_make_op_backward_with_wrong_count_is_caught():
    x = t((2,), requires_grad=True)
    y = make_op(x.data * 2, (x,), lambda g: (g, g), name="two")
    with pytest.raises(ValueError, match="returned 2 gradients for 1 inputs"):
        y.sum().backward()


# -- cross_entropy ----------------------------------------------------------------------------------

def test_cross_entropy_float_targets_is_type_error_naming_dtype():
    with pytest.raises(TypeError, match="float32"):
        F.cross_entropy(t((4, 3)), np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        F.cross_entropy(t((4, 3)), Tensor(np.zeros(4)))


def test_cross_entropy_target_out_of_range():
    with pytest.raises(ValueError, match="target 3 is out of range for 3 classes"):
        F.cross_entropy(t((4, 3)), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="target -1 is out of range"):
        F.cross_entropy(t((4, 3)), np.array([0, -1, 2, 1]))


def test_cross_entropy_target_shape():
    with pytest.raises(ValueError, match=re.escape("logits of shape (4, 3) need targets of shape (4,), got (5,)")):
        F.cross_entropy(t((4, 3)), np.zeros(5, dtype=np.int64))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(t((2, 3)), np.zeros(2, dtype=np.int64), reduction="avg")


# -- einsum -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, shapes, message", [
    ("ij,jk->iz", [(2, 3), (3, 4)], "output subscript 'z' does not appear in any input"),
    ("ij,jk->ii", [(2, 3), (3, 4)], "output subscript 'i' appears more than once"),
    ("ij,jk->ik", [(2, 3)], "name 2 operand(s) but 1 were given"),
    ("ij->ij", [(2, 3), (3, 4)], "name 1 operand(s) but 2 were given"),
    ("ij,jk->ik", [(2, 3), (4, 5)], "index 'j' has size 3 in operand 0 but size 4 in operand 1"),
    ("ijk,jk->i", [(2, 3), (3, 4)], "operand 0 has 2 dimension(s) but its subscripts 'ijk' name 3"),
    ("ij,j1->i", [(2, 3), (3, 4)], "invalid character '1'"),
    ("ij->i->j", [(2, 3)], "more than one '->'"),
    ("i..j->ij", [(2, 3)], "malformed ellipsis"),
    ("ij->i,j", [(2, 3)], "cannot contain ','"),
    ("ii->i", [(2, 3)], "index 'i' is repeated in operand 0 with different sizes 2 and 3"),
    ("...ij->ij", [(3,)], "operand 0 has 1 dimension(s) but '...ij' names at least 2"),
])
def test_einsum_spec_errors_say_what_is_wrong(spec, shapes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.einsum(spec, *[np.ones(s) for s in shapes])


def test_einsum_subscripts_must_be_a_string():
    with pytest.raises(TypeError, match="string"):
        F.einsum(["ij"], np.ones((2, 2)))


def test_einsum_via_matmul_rejects_diagonals():
    with pytest.raises(ValueError, match="repeated within operand 0"):
        F.einsum_via_matmul("ii,i->i", np.ones((2, 2)), np.ones(2))


# -- others -----------------------------------------------------------------------------------------

def test_gelu_unknown_approximation():
    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        F.gelu(t((2,)), approximate="fast")


def test_softmax_takes_one_axis():
    with pytest.raises(TypeError, match="single int"):
        F.softmax(t((2, 3)), axis=(0, 1))


def test_linear_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("input of shape (5, 4) does not fit weight of shape (3, 2)")):
        F.linear(t((5, 4)), t((3, 2)))


def test_unsupported_operand_type():
    with pytest.raises(TypeError):
        t((2,)) + "a"


def test_softmax_axis_none_is_rejected():
    with pytest.raises(TypeError, match="single int"):
        F.log_softmax(t((2, 3)), axis=None)
