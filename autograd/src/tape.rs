//! The tape: every value computed from a variable is recorded as a node, in creation order
//! (which is already a topological order), with the rule that back-propagates through it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;

use engine::{Element, Tensor};

use crate::anomaly::forward_anomaly;
use crate::backward::Backward;
use crate::error::Error;

/// Index of a node on its tape.
pub type NodeId = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// An input that may require a gradient; its gradient accumulates across `backward` calls.
    Leaf,
    /// A value that never receives a gradient (data, labels, detached values).
    Constant,
    /// The output of an op.
    Op { name: String },
}

pub(crate) struct Node<T: Element> {
    /// `None` once freed by an inference scope ([`Tape::scope`], [`Tape::release`]).
    pub value: Option<Tensor<T>>,
    pub inputs: Vec<NodeId>,
    pub rule: Option<Box<dyn Backward<T>>>,
    pub kind: NodeKind,
    pub requires_grad: bool,
    /// Accumulated gradient (leaves only).
    pub grad: Option<Tensor<T>>,
    /// True once `backward` dropped the rule.
    pub freed: bool,
    pub label: Option<String>,
    /// True once an op that requires a gradient has this node as an input: its value is then
    /// needed by that op's rule, and a scope or a release keeps it.
    pub needed: bool,
}

impl<T: Element> Node<T> {
    /// The value, or a panic naming node `id` when a scope freed it.
    #[track_caller]
    pub(crate) fn value(&self, id: NodeId) -> &Tensor<T> {
        match &self.value {
            Some(v) => v,
            None => panic!(
                "sparsegrad: node #{id} ({}) was freed by an inference scope (Tape::scope or Tape::release) \
                 and cannot be used any more; return it from the scope (or do not release it) to keep it",
                Tape::<T>::node_label(self, id)
            ),
        }
    }
}

/// A recording of a computation, for reverse-mode differentiation.
///
/// ```
/// use sparsegrad_autograd::Tape;
/// use engine::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::from([1.0, 2.0, 3.0]));
/// // y = Σ x²  →  dy/dx = 2x
/// let y = x.square().sum_all();
/// let grads = tape.backward(&y).unwrap();
/// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0, 4.0, 6.0]);
/// ```
pub struct Tape<T: Element> {
    pub(crate) nodes: RefCell<Vec<Node<T>>>,
    grad_enabled: Cell<bool>,
    anomaly_mode: Cell<bool>,
    anomaly: RefCell<Option<Error>>,
    /// An inference tape ([`Tape::inference`]): nothing requires a gradient, ops keep neither
    /// rule nor inputs, and scopes free everything they do not return.
    pub(crate) inference: bool,
}

impl<T: Element> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A handle to a node of a tape: cheap to copy, valid as long as the tape.
#[derive(Clone, Copy)]
pub struct Var<'t, T: Element> {
    id: NodeId,
    tape: &'t Tape<T>,
}

/// Leaf gradients after a backward call, keyed by node.
#[derive(Clone, Debug)]
pub struct Grads<T: Element> {
    map: HashMap<NodeId, Tensor<T>>,
}

impl<T: Element> Default for Grads<T> {
    fn default() -> Self {
        Grads { map: HashMap::new() }
    }
}

impl<T: Element> Grads<T> {
    pub(crate) fn insert(&mut self, id: NodeId, g: Tensor<T>) {
        self.map.insert(id, g);
    }
    /// The accumulated gradient of a leaf, or `None` when no gradient reached it.
    pub fn get(&self, v: &Var<'_, T>) -> Option<&Tensor<T>> {
        self.map.get(&v.id)
    }
    /// The accumulated gradient of a leaf, zeros of its shape when no gradient reached it.
    pub fn wrt(&self, v: &Var<'_, T>) -> Tensor<T> {
        self.map.get(&v.id).cloned().unwrap_or_else(|| Tensor::zeros(&v.shape()))
    }
    /// Number of leaves with a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<T: Element> Tape<T> {
    pub fn new() -> Tape<T> {
        Tape {
            nodes: RefCell::new(Vec::new()),
            grad_enabled: Cell::new(true),
            anomaly_mode: Cell::new(false),
            anomaly: RefCell::new(None),
            inference: false,
        }
    }

    /// A tape for evaluation only (see [`crate::infer`](mod@crate::infer)): every value is a
    /// constant, ops record neither their rule nor their inputs, and [`Tape::scope`] and
    /// [`Tape::release`] free every value they are given, so a forward written on [`Var`]
    /// runs with the memory of its live values only. [`Tape::backward`] on it finds nothing
    /// to differentiate (empty [`Grads`]).
    ///
    /// ```
    /// use sparsegrad_autograd::Tape;
    /// use engine::Tensor;
    /// let tape = Tape::<f64>::inference();
    /// let w = tape.leaf(Tensor::from([1.0, -2.0]));
    /// let y = tape.scope(|| w.relu().square().sum_all());
    /// assert_eq!(y.item(), 1.0);
    /// assert!(!w.requires_grad() && tape.is_inference());
    /// ```
    pub fn inference() -> Tape<T> {
        let tape = Tape::new();
        tape.grad_enabled.set(false);
        Tape { inference: true, ..tape }
    }

    /// True for a tape made by [`Tape::inference`].
    pub fn is_inference(&self) -> bool {
        self.inference
    }

    fn push_node(&self, node: Node<T>) -> Var<'_, T> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        Var { id: nodes.len() - 1, tape: self }
    }

    /// An input that requires a gradient.
    /// On an inference tape it requires none.
    pub fn leaf(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push_node(Node {
            value: Some(value),
            inputs: vec![],
            rule: None,
            kind: NodeKind::Leaf,
            requires_grad: !self.inference,
            grad: None,
            freed: false,
            label: None,
            needed: false,
        })
    }

    /// A leaf with a name (shown by [`Tape::graph`] and [`Tape::to_dot`]).
    pub fn leaf_named(&self, value: Tensor<T>, name: &str) -> Var<'_, T> {
        let v = self.leaf(value);
        self.nodes.borrow_mut()[v.id].label = Some(name.to_string());
        v
    }

    /// A value that never receives a gradient (data, labels, targets).
    pub fn constant(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push_node(Node {
            value: Some(value),
            inputs: vec![],
            rule: None,
            kind: NodeKind::Constant,
            requires_grad: false,
            grad: None,
            freed: false,
            label: None,
            needed: false,
        })
    }

    /// Records the result `value` of an op on `inputs` with its backward `rule`. When no input
    /// requires a gradient, or inside [`Tape::no_grad`], the result is recorded as a constant
    /// and the rule is dropped; on an inference tape the inputs are not recorded either. In
    /// anomaly mode a non-finite `value` is reported.
    ///
    /// **Panics** if an input belongs to another tape.
    #[track_caller]
    pub fn push_op(&self, value: Tensor<T>, inputs: &[Var<'_, T>], rule: impl Backward<T> + 'static) -> Var<'_, T> {
        // Only the boxing depends on the rule's type: this shim has a copy per rule in every
        // crate that records ops (hundreds), `push_rule` one per element type.
        let records = self.grad_enabled() && inputs.iter().any(|v| v.requires_grad());
        if records {
            self.push_rule(value, inputs, Ok(Box::new(rule)))
        } else {
            self.push_rule(value, inputs, Err(rule.name()))
        }
    }

    /// [`Tape::push_op`] with the rule boxed when the op is recorded, or only its name.
    #[track_caller]
    fn push_rule(
        &self,
        value: Tensor<T>,
        inputs: &[Var<'_, T>],
        rule: Result<Box<dyn Backward<T>>, &str>,
    ) -> Var<'_, T> {
        let name = match &rule {
            Ok(r) => r.name(),
            Err(n) => n,
        };
        for v in inputs {
            assert!(std::ptr::eq(v.tape, self), "{name}: an input variable belongs to another tape");
        }
        if self.anomaly_mode() && self.anomaly.borrow().is_none() {
            let shapes = inputs.iter().map(|v| v.shape()).collect();
            if let Some(e) = forward_anomaly(name, shapes, &value) {
                eprintln!("sparsegrad {e}");
                *self.anomaly.borrow_mut() = Some(e);
            }
        }
        let rule = match rule {
            Ok(r) => r,
            Err(name) => {
                let name = name.to_string();
                let v = self.constant(value);
                let mut nodes = self.nodes.borrow_mut();
                nodes[v.id].kind = NodeKind::Op { name };
                if !self.inference {
                    nodes[v.id].inputs = inputs.iter().map(|v| v.id).collect();
                }
                return v;
            }
        };
        {
            let mut nodes = self.nodes.borrow_mut();
            for v in inputs {
                nodes[v.id].needed = true;
            }
        }
        self.push_node(Node {
            value: Some(value),
            inputs: inputs.iter().map(|v| v.id).collect(),
            kind: NodeKind::Op { name: rule.name().to_string() },
            rule: Some(rule),
            requires_grad: true,
            grad: None,
            freed: false,
            label: None,
            needed: false,
        })
    }

    /// Runs `f` with recording disabled: results are constants. The tape still holds their
    /// values until it is dropped, unless `f` (or the layers it calls) frees them with
    /// [`Tape::scope`] or [`Tape::release`]; [`Tape::inference`] frees everything it can.
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        let prev = self.grad_enabled.replace(false);
        let r = f();
        self.grad_enabled.set(prev);
        r
    }

    /// False inside [`Tape::no_grad`].
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled.get()
    }

    /// Clears the accumulated gradients of every leaf.
    pub fn zero_grad(&self) {
        for n in self.nodes.borrow_mut().iter_mut() {
            n.grad = None;
        }
    }

    /// Turns anomaly mode on or off. When on, the first op whose forward produces NaN or ±∞ is
    /// reported (on stderr at once, and as the error of the next `backward`), and `backward`
    /// stops with [`Error::Anomaly`] at the first rule that produces one.
    pub fn set_anomaly_mode(&self, on: bool) {
        self.anomaly_mode.set(on);
    }

    pub fn anomaly_mode(&self) -> bool {
        self.anomaly_mode.get()
    }

    /// The forward anomaly found so far in anomaly mode, if any.
    pub fn forward_anomaly(&self) -> Option<Error> {
        self.anomaly.borrow().clone()
    }

    /// The distinct names of the ops recorded on this tape (with or without a gradient), in
    /// the order they first appear. The audit uses it to check its own coverage.
    pub fn recorded_ops(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for n in self.nodes.borrow().iter() {
            if let NodeKind::Op { name } = &n.kind {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of elements in the values the tape still holds (a view counts at its own
    /// size): what a forward keeps alive, for checking that an inference pass frees its
    /// intermediates ([`Tape::scope`], [`Tape::release`]).
    ///
    /// ```
    /// use sparsegrad_autograd::Tape;
    /// use engine::Tensor;
    /// let tape = Tape::<f32>::inference();
    /// let x = tape.constant(Tensor::zeros(&[2, 3]));
    /// let y = tape.scope(|| x.relu().sum_all());
    /// assert_eq!(tape.live_elements(), 6 + 1); // x and y; relu's output is gone
    /// # let _ = y;
    /// ```
    pub fn live_elements(&self) -> usize {
        self.nodes.borrow().iter().filter_map(|n| n.value.as_ref()).map(|v| v.numel()).sum()
    }

    /// The shape of a node's value, `released` once a scope freed it.
    fn shape_text(n: &Node<T>) -> String {
        n.value.as_ref().map_or_else(|| "released".to_string(), |v| format!("{:?}", v.shape()))
    }

    fn node_label(n: &Node<T>, id: NodeId) -> String {
        match (&n.kind, &n.label) {
            (NodeKind::Leaf, Some(l)) => format!("leaf '{l}'"),
            (NodeKind::Leaf, None) => format!("leaf #{id}"),
            (NodeKind::Constant, _) => "const".to_string(),
            (NodeKind::Op { name }, _) => name.clone(),
        }
    }

    /// The recorded graph, one line per node: id, op, inputs, shape, and whether it requires
    /// a gradient.
    pub fn graph(&self) -> String {
        let nodes = self.nodes.borrow();
        let mut s = format!("tape: {} nodes ({})\n", nodes.len(), T::DTYPE);
        for (id, n) in nodes.iter().enumerate() {
            let inputs: Vec<String> = n.inputs.iter().map(|i| format!("#{i}")).collect();
            s += &format!(
                "  #{id:<4} {:<18} ({}) -> {}{}{}\n",
                Self::node_label(n, id),
                inputs.join(", "),
                Self::shape_text(n),
                if n.requires_grad { "  grad" } else { "" },
                if n.freed { "  freed" } else { "" }
            );
        }
        s
    }

    /// The recorded graph in Graphviz DOT (`dot -Tsvg`): leaves as boxes, constants grey,
    /// ops as ellipses labelled with their name and output shape.
    pub fn to_dot(&self) -> String {
        let nodes = self.nodes.borrow();
        let mut s = String::from("digraph tape {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
        for (id, n) in nodes.iter().enumerate() {
            let label = format!("{}\\n{}", Self::node_label(n, id), Self::shape_text(n));
            let style = match n.kind {
                NodeKind::Leaf => "shape=box, style=bold",
                NodeKind::Constant => "shape=box, color=grey, fontcolor=grey",
                NodeKind::Op { .. } if n.requires_grad => "shape=ellipse",
                NodeKind::Op { .. } => "shape=ellipse, color=grey, fontcolor=grey",
            };
            s += &format!("  n{id} [label=\"{label}\", {style}];\n");
            for &i in &n.inputs {
                s += &format!("  n{i} -> n{id};\n");
            }
        }
        s += "}\n";
        s
    }
}

impl<T: Element> fmt::Display for Tape<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.graph())
    }
}

impl<'t, T: Element> Var<'t, T> {
    /// The node's index on its tape.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The tape this variable lives on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The value (a cheap shared handle, no copy).
    ///
    /// **Panics** (as every accessor of the value, its shape included) if an inference scope
    /// freed it ([`Tape::scope`], [`Tape::release`]), naming the node.
    #[track_caller]
    pub fn value(&self) -> Tensor<T> {
        self.tape.nodes.borrow()[self.id].value(self.id).clone()
    }

    /// Shape of the value.
    #[track_caller]
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.id].value(self.id).shape().to_vec()
    }

    /// Rank of the value.
    #[track_caller]
    pub fn rank(&self) -> usize {
        self.tape.nodes.borrow()[self.id].value(self.id).rank()
    }

    /// Length of axis `axis`.
    #[track_caller]
    pub fn dim(&self, axis: usize) -> usize {
        self.tape.nodes.borrow()[self.id].value(self.id).dim(axis)
    }

    /// False once an inference scope freed the value ([`Tape::scope`], [`Tape::release`]).
    pub fn is_live(&self) -> bool {
        self.tape.nodes.borrow()[self.id].value.is_some()
    }

    /// True when a gradient flows back through this variable.
    pub fn requires_grad(&self) -> bool {
        self.tape.nodes.borrow()[self.id].requires_grad
    }

    /// The gradient accumulated so far (leaves only).
    pub fn grad(&self) -> Option<Tensor<T>> {
        self.tape.nodes.borrow()[self.id].grad.clone()
    }

    /// Clears this leaf's accumulated gradient.
    pub fn zero_grad(&self) {
        self.tape.nodes.borrow_mut()[self.id].grad = None;
    }

    /// The same value as a constant: no gradient flows back through the result.
    pub fn detach(&self) -> Var<'t, T> {
        self.tape.constant(self.value())
    }

    /// The single value of a one-element variable, as `f64`.
    #[track_caller]
    pub fn item(&self) -> f64 {
        self.value().item().as_f64()
    }
}

impl<T: Element> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tape.nodes.borrow()[self.id].value {
            Some(v) => write!(f, "Var(#{} {:?})", self.id, v.shape()),
            None => write!(f, "Var(#{} released)", self.id),
        }
    }
}
