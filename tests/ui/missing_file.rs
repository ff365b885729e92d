resnetc::resnet!(Missing = "specs/no_such_spec.resnet");

fn main() {}
