//! The op families a backend implements, one trait per file, burn-style: [`Memory`] holds the
//! buffer types and moves data; each other family needs only it. [`super::Backend`] is every
//! family at once, so generic code keeps one bound. Calling an op on a concrete backend
//! (`Cpu.add(..)`) needs its family in scope: `use contextrast_train::backend::ops::*`.
mod batchnorm;
mod contrast;
mod conv;
mod elementwise;
mod layout;
mod loss;
mod memory;
mod normalize;
mod optim;
mod resize;

pub use batchnorm::{BatchNormEval, BatchNormOps, BatchNormSaved, BatchNormTrain};
pub use contrast::ContrastOps;
pub use conv::ConvOps;
pub use elementwise::ElementwiseOps;
pub use layout::LayoutOps;
pub use loss::LossOps;
pub use memory::Memory;
pub use normalize::NormalizeOps;
pub use optim::OptimOps;
pub use resize::ResizeOps;
