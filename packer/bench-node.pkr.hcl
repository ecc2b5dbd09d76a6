# bench-node: one AMI for both roles of a bench-cluster node (manager or member).
# The role, the manager's address, the cluster CA and (members) a one-time join token arrive as EC2
# user-data at boot and are applied by bench-first-boot.service (packer/scripts/first-boot.sh); nothing role-specific is baked in.
#
#   .venv/bin/pip wheel --no-deps -w dist .
#   packer build -var region=eu-central-1 -var wheel_path=dist/bench_cluster-0.1.0-cp311-cp311-linux_x86_64.whl packer/

variable "region" {
  type        = string
  default     = "eu-central-1"
  description = "AWS region to build the image in."
}

variable "base_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "Name pattern of the base Debian 12 AMI; the newest match is used."
}

variable "base_ami_owner" {
  type        = string
  default     = "136693071363"
  description = "Owner account of the base AMI (Debian's official cloud images)."
}

variable "instance_type" {
  type        = string
  default     = "t3.medium"
  description = "Build instance type (compiling pyfuse3 needs more than a nano)."
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet for the build instance; empty lets AWS pick the default VPC's subnet."
}

variable "wheel_path" {
  type        = string
  default     = "dist/bench_cluster-0.1.0-cp311-cp311-linux_x86_64.whl"
  description = "The project's wheel (pip wheel --no-deps -w dist .), installed into /opt/bench/venv."
}

variable "ami_name_prefix" {
  type    = string
  default = "bench-node"
}

locals {
  build_stamp = regex_replace(timestamp(), "[- TZ:]", "")
  wheel_name  = basename(var.wheel_path)
  staging     = "/tmp/bench"
}

source "amazon-ebs" "bench-node" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "admin"
  ami_name      = "${var.ami_name_prefix}-${local.build_stamp}"

  source_ami_filter {
    filters = {
      name                = var.base_ami_name
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = [var.base_ami_owner]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 16
    volume_type           = "gp3"
    throughput            = 125
    iops                  = 3000
    delete_on_termination = true
  }

  tags = {
    Name          = "${var.ami_name_prefix}-${local.build_stamp}"
    "bench:image" = "node"
    "bench:wheel" = local.wheel_name
  }
}

build {
  sources = ["source.amazon-ebs.bench-node"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.staging}/src/packer"]
  }

  provisioner "file" {
    source      = var.wheel_path
    destination = "${local.staging}/${local.wheel_name}"
  }

  provisioner "file" {
    source      = "${path.root}/../systemd"
    destination = "${local.staging}/src"
  }

  provisioner "file" {
    source      = "${path.root}/scripts"
    destination = "${local.staging}/src/packer"
  }

  # The same script the tests run into a clean debootstrapped root.
  provisioner "shell" {
    inline = [
      "sudo bash ${local.staging}/src/packer/scripts/install-node.sh --wheel ${local.staging}/${local.wheel_name} --src ${local.staging}/src",
    ]
  }

  # Every instance must get its own machine id, and must not inherit build leftovers.
  provisioner "shell" {
    inline = [
      "sudo rm -rf ${local.staging}",
      "sudo apt-get clean",
      "sudo truncate -s 0 /etc/machine-id",
    ]
  }
}
